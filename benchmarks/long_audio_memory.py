"""Peak memory and time of long recordings: a 30 s file next to a 10-minute one, each in a fresh process.

Long audio is processed in windows (``emotion2vec_webui/longform.py``), so peak
memory should stay nearly flat with duration and time should grow linearly.
Every case runs in its own subprocess and reports its peak RSS
(``ru_maxrss`` from ``os.wait4``), so cases cannot inflate each other. The last
case is the CLI exactly as a user runs it::

    E2V_MODEL=<model dir> emotion2vec-webui recognize long.wav --granularity frame --json

Usage::

    python benchmarks/long_audio_memory.py [--model DIR] [--durations 30,600] [--output benchmarks/long_audio.md]

Without ``--model`` a random-weight model of the real large shape is built in
a temporary folder (``make-test-model --size large``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_long_audio(path: Path, seconds: float) -> Path:
    """Speech (espeak-ng when installed), tones, noise and pauses, repeated to ``seconds``."""
    import soxr

    from emotion2vec_webui.audio.signals import espeak_available, noise, speech, tone, write_audio

    parts = []
    if espeak_available():
        for text in ("I have been waiting here for an hour.", "That is wonderful news, thank you so much!"):
            data, rate = speech(text)
            parts += [soxr.resample(data, rate, 16000).astype(np.float32), np.zeros(6000, np.float32)]
    parts += [tone(3.0, 16000, freq=180)[:, 0], np.zeros(8000, np.float32), noise(2.0, 16000)[:, 0]]
    block = np.concatenate(parts)
    wave = np.tile(block, int(np.ceil(seconds * 16000 / len(block))))[: int(seconds * 16000)]
    return write_audio(path, wave, 16000, "wav")


def child(args: argparse.Namespace) -> None:
    """One case in this process: load, recognise once, print a JSON line."""
    import dataclasses
    import resource

    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    settings = dataclasses.replace(load_settings(), output_dir=Path(args.out))
    engine = EmotionEngine.load(args.model, device=args.device, precision="fp32")
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    outcome = Recognition(settings, RecognizeOptions(args.granularity, args.embedding)).run(args.wav, lambda fn: fn(engine))
    seconds = time.perf_counter() - t0
    frames = outcome.result["frames"]
    print(
        json.dumps(
            {
                "load_peak_mb": round(after_load, 1),
                "seconds": round(seconds, 2),
                "frames": len(frames["scores"]) if frames else 0,
            }
        )
    )


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS in MB, stdout)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", errors="replace")
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: build a random-weight large model)")
    parser.add_argument("--durations", default="30,600", help="seconds, comma-separated")
    parser.add_argument("--granularities", default="utterance,frame")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, help="write the Markdown table here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--granularity", help=argparse.SUPPRESS)
    parser.add_argument("--embedding", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="e2v_long_"))
    model = args.model
    if not model:
        from emotion2vec_webui.model.resolve import quiet_funasr
        from emotion2vec_webui.model.standins import make_test_model

        with quiet_funasr():
            model = str(make_test_model(work / "large", "large", seed=0))
    durations = [float(d) for d in args.durations.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for seconds in durations:
        wav = make_long_audio(work / f"audio_{seconds:g}s.wav", seconds)
        for gran in args.granularities.split(","):
            cmd = [sys.executable, __file__, "--child", "--model", model, "--wav", str(wav), "--out", str(work / "o")]
            cmd += ["--granularity", gran, "--device", args.device, "--embedding"]
            code, wall, peak, text = run_measured(cmd, env)
            info = json.loads(text.strip().splitlines()[-1]) if code == 0 else {}
            rows.append((f"pipeline, {gran}, embedding", seconds, code, peak, info))
            print(f"{seconds:g} s {gran}: exit {code}, peak RSS {peak:.0f} MB, {info}", flush=True)
    long_wav = work / f"audio_{max(durations):g}s.wav"
    cli_env = {**env, "E2V_MODEL": model, "E2V_DEVICE": args.device, "E2V_OUTPUT_DIR": str(work / "cli")}
    cmd = [sys.executable, "-m", "emotion2vec_webui", "recognize", str(long_wav), "--granularity", "frame", "--json"]
    code, wall, peak, text = run_measured(cmd, cli_env)
    cli = json.loads(text.strip().splitlines()[-1]) if code == 0 else {}
    frames = len(cli["frames"]["scores"]) if cli else 0
    covered = frames * 0.02
    rows.append(
        (
            "CLI `recognize --granularity frame --json`",
            max(durations),
            code,
            peak,
            {"seconds": round(wall, 1), "frames": frames},
        )
    )
    print(
        f"CLI: exit {code}, peak RSS {peak:.0f} MB, {wall:.1f} s, {frames} frames covering {covered:.1f} s", flush=True
    )

    import torch

    lines = [
        f"Model: `{model}` ({'random weights, large shape' if not args.model else 'given'}), device {args.device}, "
        f"fp32, window {os.environ.get('E2V_WINDOW_S', '30')} s. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| case | audio (s) | exit | peak RSS (MB) | after load (MB) | time (s) | frames |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, code, peak, info in rows:
        lines.append(
            f"| {name} | {seconds:g} | {code} | {peak:.0f} | {info.get('load_peak_mb', '–')} | "
            f"{info.get('seconds', '–')} | {info.get('frames', '–')} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n", "utf-8")


if __name__ == "__main__":
    main()
