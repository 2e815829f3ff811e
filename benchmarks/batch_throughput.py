"""Batch throughput: the local engine and the Ray Data engine on the same clips, side by side.

Runs ``emotion2vec-webui batch`` as a user would (a fresh process per engine)
on N generated clips of S seconds with the given model (default: a
random-weight *large* test model, the real large model's shape and compute),
and reports clips per second and × real time, both end to end (process start
to exit: imports, model load, Ray start-up) and in the steady state (rows
appended to summary.jsonl per second, from the first row to the last). It
also checks that both engines gave the same emotions and scores.

    python benchmarks/batch_throughput.py                      # 100 clips × 5 s, /tmp/m_large
    python benchmarks/batch_throughput.py --clips 20 --seconds 2 --model /tmp/m_tiny --output -

Writes a Markdown table (default: benchmarks/batch_results.md) with the machine it ran on.
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

HERE = Path(__file__).resolve().parent


def make_clips(folder: Path, count: int, seconds: float) -> float:
    """``count`` clips of speech-like tones and noise, 16 kHz wav; returns total seconds."""
    from emotion2vec_webui.audio.signals import noise, tone, write_audio

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        x = tone(seconds, 16000, freq=110 + 7 * i)[:, 0] + noise(seconds, 16000, amp=0.02, seed=i)[:, 0]
        write_audio(folder / f"clip_{i:04d}.wav", x.astype(np.float32), 16000, "wav")
    return count * seconds


def machine() -> str:
    import torch

    from emotion2vec_webui.bench.benchmark import cpu_model

    cpu = cpu_model()

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {mem_gb:.0f} GB RAM; Python {platform.python_version()}, "
        f"torch {torch.__version__} (CPU, {torch.get_num_threads()} threads), Ray {ray_version}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )


def run_engine(engine: str, clips: Path, model: str, batch_dir: Path, workers: int, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "emotion2vec_webui", "--log-level", "WARNING", "batch", str(clips)]
    # "local-1t": the local engine with one torch thread, as each Ray actor gets (Ray sets OMP_NUM_THREADS=1).
    one_thread = engine.endswith("-1t")
    env = {**os.environ, **({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if one_thread else {})}
    cmd += ["--model", model, "--device", "cpu", "--batch-dir", str(batch_dir), "--engine", engine.removesuffix("-1t")]
    cmd += ["--workers", str(workers), "--batch-size", str(batch_size)]
    summary = batch_dir / "summary.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: list[tuple[float, int]] = []  # (time, rows) whenever the row count changed
    while proc.poll() is None:
        try:
            count = summary.read_bytes().count(b"\n")
        except OSError:
            count = 0
        if count and (not seen or count != seen[-1][1]):
            seen.append((time.perf_counter() - t0, count))
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{engine} engine failed ({proc.returncode}):\n{err[-3000:]}")
    rows = [json.loads(line) for line in summary.read_text().splitlines()]
    (t_first, n_first), (t_last, n_last) = seen[0], seen[-1]
    steady = (n_last - n_first) / (t_last - t_first) if t_last > t_first else float("nan")
    return {"engine": engine, "wall_s": wall, "first_row_s": t_first, "steady_clips_s": steady, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/m_large", help="model dir (made as a large test model if missing)")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--engines", default="local,local-1t,ray", help="local, local-1t (one torch thread), ray")
    ap.add_argument("--workers", type=int, default=2, help="decode threads (local) / model actors (ray)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--output", default=str(HERE / "batch_results.md"), help="Markdown file, or - for stdout only")
    args = ap.parse_args()

    if not Path(args.model, "model.pt").exists():
        from emotion2vec_webui.model.resolve import quiet_funasr
        from emotion2vec_webui.model.standins import make_test_model

        print(f"making a large random-weight test model in {args.model} …", file=sys.stderr)
        with quiet_funasr():
            make_test_model(args.model, "large", seed=0)
    where = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="e2v-batch-bench-") as tmp:
        audio_s = make_clips(Path(tmp) / "clips", args.clips, args.seconds)
        for engine in args.engines.split(","):
            print(f"running the {engine} engine on {args.clips} clips …", file=sys.stderr)
            r = run_engine(engine, Path(tmp) / "clips", args.model, Path(tmp) / engine, args.workers, args.batch_size)
            results.append(r)
            print(f"  {engine}: {r['wall_s']:.1f} s end to end", file=sys.stderr)

    lines = [
        f"# Batch throughput — {args.clips} clips × {args.seconds:g} s, model `{Path(args.model).name}`",
        "",
        f"Recorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on: {where}.",
        "",
        f"Command: `python benchmarks/batch_throughput.py --clips {args.clips} --seconds {args.seconds:g} "
        f"--workers {args.workers} --batch-size {args.batch_size}`. One run per engine, each a fresh "
        "`emotion2vec-webui batch` process (`--device cpu`); local = decode threads + the model in the main "
        f"thread; local-1t = the same with one torch thread (`OMP_NUM_THREADS=1`); ray = a local Ray instance, "
        f"{args.workers} model actors (1 CPU, so 1 torch thread, each) fed by decode tasks.",
        "",
        "| engine | end to end (s) | clips/s | × real time | first row after (s) | steady clips/s | steady × real time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = sum(row["status"] == "ok" for row in r["rows"])
        w, steady = r["wall_s"], r["steady_clips_s"]
        lines.append(
            f"| {r['engine']} | {w:.1f} | {n / w:.2f} | {audio_s / w:.1f} | {r['first_row_s']:.1f} "
            f"| {steady:.2f} | {steady * args.seconds:.1f} |"
        )
    lines += [
        "",
        "End to end = process start to exit (imports, model load, Ray start-up, all clips). Steady = rows "
        "written per second between the first and the last row of summary.jsonl (start-up excluded).",
    ]
    from emotion2vec_webui.labels import EMOTIONS

    a = {row["file"]: row for row in results[0]["rows"]}
    for other in results[1:]:
        b = {row["file"]: row for row in other["rows"]}
        same = sum(a[f]["emotion"] == b[f]["emotion"] for f in a)
        diff = max(abs(a[f][k] - b[f][k]) for f in a for k in EMOTIONS if a[f]["status"] == "ok")
        lines += [
            "",
            f"{other['engine']} vs {results[0]['engine']}: same emotion on {same}/{len(a)} clips; "
            f"largest score difference {diff:.1e}.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
