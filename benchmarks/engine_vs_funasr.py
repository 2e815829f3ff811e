"""Our engine against raw ``funasr.AutoModel.generate()``, side by side in one run; prints every target.

    E2V_MODEL=/path/to/large-model python benchmarks/engine_vs_funasr.py [--repeats 6] [--record FILE]

Measured on CPU, on the same clips, each contender in its own process so that
none pays for another's memory churn. Each contender's calls run back to back,
contenders taking turns in two rounds, the second in reverse order
(``--interleave-calls``: single calls alternating instead). Median and min per
contender are printed; targets are judged on the medians (see
:func:`fastest_rows`).

1. the default path (fp32) against ``AutoModel.generate()`` (FunASR's own
   load) on 3, 10 and 30 s clips: target <= 1.05x;
2. bf16, int8 and (when onnxruntime is installed) onnx and onnx-int8
   against the same: the fastest mode that keeps 100% top-1 agreement and max
   score difference <= 0.01 against fp32 on 20 espeak-ng clips (varied texts,
   voices, speeds, pitches) must be >= 2x faster (when no mode keeps the
   bound, the fastest overall is judged); embedding cosine is printed too;
3. loading, each in a fresh subprocess (interleaved, min of repeats): peak
   RSS <= 0.6x FunASR's own load, and load time no slower;
4. the REST API (``POST /api/v1/recognize``, a real server subprocess) on a
   5 s clip against the engine call: <= 1.15x (SKIP when there is no API).
   Judged by the larger of two ratios: the API's min against an engine call's
   min in this process (which also catches a server that runs the engine
   slower), and the median over requests of each against the server's own
   engine time for that request (its ``/metrics``: the API's own cost,
   without the noise between two processes).

Random weights (make-test-model) saturate the classifier's softmax more than
trained weights usually do, which makes score differences smaller; say so
when quoting the fidelity figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXTS = [
    "I can't believe you did that again, after everything we talked about.",
    "What a wonderful surprise, thank you so much for coming tonight!",
    "The train leaves at seven. Please be on time, we cannot wait.",
    "Nobody called me back, and now the whole week is ruined.",
    "Look out! There's something moving behind the door.",
    "Well, I suppose the results are fine, nothing special really.",
    "We won the match! I still can't believe it, it was amazing.",
    "Please leave me alone. I just want to sit here for a while.",
    "Is that really what you think of me? After all these years?",
    "The report is due on Friday and the numbers still do not add up.",
]
INFERENCE_SUM = 'e2v_recognition_stage_seconds_sum{stage="inference"}'
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
SPEED_WORKER = """
import sys, time
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
from emotion2vec_webui.model.resolve import quiet_funasr
with quiet_funasr():
    import funasr
if kind == "generate":
    from emotion2vec_webui.model.resolve import load_automodel, resolve_model
    automodel = load_automodel(resolve_model(path), "cpu")
    run = lambda x: automodel.generate(x, granularity="utterance", extract_embedding=True, disable_pbar=True)
else:
    from emotion2vec_webui.engine.engine import EmotionEngine
    engine = EmotionEngine.load(path, device="cpu", precision=kind)
    run = lambda x: engine.recognize(x, "utterance", extract_embedding=True)
print("ready", flush=True)
clips = {}
for line in sys.stdin:
    name = line.strip()
    if name not in clips:
        clips[name] = np.load(name)
    t0 = time.perf_counter()
    run(clips[name])
    print("T", time.perf_counter() - t0, flush=True)
"""
LOAD_SCRIPT = """
import json, sys, time
def peak_mb():  # VmHWM: ru_maxrss would report the (bigger) parent's peak, as it survives exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
mode, path = sys.argv[1], sys.argv[2]
from emotion2vec_webui.model.resolve import quiet_funasr
with quiet_funasr():
    import funasr
import numpy as np
t0 = time.perf_counter()
if mode == "funasr":
    from emotion2vec_webui.model.resolve import load_automodel, resolve_model
    automodel = load_automodel(resolve_model(path), "cpu")
    run = lambda x: automodel.generate(x, granularity="utterance", extract_embedding=False, disable_pbar=True)
else:
    from emotion2vec_webui.engine.engine import EmotionEngine
    engine = EmotionEngine.load(path, device="cpu", precision="fp32", warmup=False)
    run = lambda x: engine.recognize(x, "utterance", extract_embedding=False)
load_s = time.perf_counter() - t0
rss_load = peak_mb()
run(np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32))
rss_run = peak_mb()
print(json.dumps({"load_s": load_s, "rss_load_mb": rss_load, "rss_first_call_mb": rss_run}))
"""


def speech_clip(text: str, voice: str, speed: int, pitch: int, seconds: float | None = None) -> np.ndarray:
    import soxr

    from emotion2vec_webui.audio.signals import speech

    data, rate = speech(text, voice=voice, speed=speed, pitch=pitch)
    data = soxr.resample(data, rate, 16000).astype(np.float32)
    if seconds is not None:
        data = np.resize(data, int(seconds * 16000)).astype(np.float32)
    return data


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


class SpeedWorker:
    """One way of running the model, alone in its own process, timing the calls the parent asks for.

    Each contender gets a process of its own, so that none pays for another's
    memory: in one shared process FunASR's whole-clip intermediates (~100 MB of
    fresh pages per 3 s call) churned the heap that every engine allocates from,
    and generate() at 3 s measured 0.54-0.65 s there against 0.34-0.40 s alone.
    The parent decides who computes (one process at a time), so the ratios
    are side by side in one run.
    """

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SPEED_WORKER, kind, model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self._expect("ready")

    def _expect(self, prefix: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.kind} worker exited (code {self.proc.wait()})")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def call(self, clip_path: str) -> float:
        """Seconds one call on the clip saved at ``clip_path`` took."""
        self.proc.stdin.write(clip_path + "\n")
        self.proc.stdin.flush()
        return float(self._expect("T "))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def timed_calls(workers: dict, clip_path: str, calls: int, interleave: bool) -> dict[str, list[float]]:
    """Seconds per call for each worker on one clip.

    By default each worker makes about ``calls`` timed calls, half per round,
    back to back after one untimed call, workers taking turns in two rounds (A B C, then C B A, so
    that a drift in the machine's speed hits everyone alike): the steady
    state of a process serving requests. The first call after another
    process has computed is slower, and by how much differs by contender
    (FunASR's ``generate()`` at 3 s: 0.51 s with single calls from six
    processes alternating against 0.30-0.47 s back to back), so alternating
    single calls (``interleave``, the earlier method) flatters whoever suffers
    least from it.
    """
    times: dict[str, list[float]] = {k: [] for k in workers}
    if interleave:
        for worker in workers.values():
            worker.call(clip_path)
        for _ in range(calls):
            for name, worker in workers.items():
                times[name].append(worker.call(clip_path))
        return times
    order = list(workers)
    for turn in (order, order[::-1]):
        for name in turn:
            workers[name].call(clip_path)
            times[name] += [workers[name].call(clip_path) for _ in range(max(1, calls // 2 + calls % 2))]
    return times


def speed_section(model: str, repeats: int, out: list[str], rows: list[tuple], interleave: bool = False):
    from emotion2vec_webui.model.onnx_backend import available

    modes = ("fp32", "bf16", "int8") + (("onnx", "onnx-int8") if available() else ())
    workers = {}
    try:
        for kind in ("generate", *modes):
            print(f"speed: loading {kind} in its own process …", file=sys.stderr, flush=True)
            workers[kind] = SpeedWorker(kind, model)
        method = "single calls alternating" if interleave else "calls back to back, contenders in turn"
        out.append(f"## Speed (seconds per call; each in its own process, {method})\n")
        out.append(
            "| clip | generate() min / p50 | ours fp32 min / p50 | "
            + " | ".join(f"{m} min / p50" for m in modes[1:])
            + " |"
        )
        out.append("|---|---|---|" + "---|" * (len(modes) - 1))
        mins: dict[float, dict[str, float]] = {}
        meds: dict[float, dict[str, float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for seconds in (3, 10, 30):
                print(f"speed: {seconds} s clips …", file=sys.stderr, flush=True)
                clip_path = str(Path(tmp) / f"clip_{seconds}.npy")
                np.save(clip_path, speech_clip(TEXTS[0] + " " + TEXTS[1], "en-us", 160, 50, seconds))
                times = timed_calls(workers, clip_path, repeats if seconds < 30 else max(2, repeats // 2), interleave)
                mins[seconds] = {k: min(v) for k, v in times.items()}
                meds[seconds] = {k: statistics.median(v) for k, v in times.items()}
                cells = [f"{min(v):.3f} / {statistics.median(v):.3f}" for v in times.values()]
                out.append(f"| {seconds} s | " + " | ".join(cells) + " |")
    finally:
        for worker in workers.values():
            worker.close()
    out.append("")
    for seconds, m in meds.items():
        ratio, by_mins = m["fp32"] / m["generate"], mins[seconds]["fp32"] / mins[seconds]["generate"]
        rows.append(
            (
                f"fp32 path vs generate(), {seconds} s",
                f"{ratio:.3f}x (mins: {by_mins:.3f}x)",
                "<= 1.05x",
                verdict(ratio <= 1.05),
            )
        )
    return modes, meds, mins


def fastest_rows(meds: dict, mins: dict, fidelity: dict, rows: list[tuple]) -> None:
    """Target rows for the fastest mode within the fidelity bound (the fastest overall when none is).

    Judged on median times. The mins are printed beside them: ``generate()``'s
    times spread far more than ours (at 3 s its min was 0.30 s and its median
    0.48 s in one run, ours 0.169 and 0.171 s), so a ratio of mins pits its
    luckiest call against our typical one and moved between 1.8x and 2.6x
    from run to run, while the medians' ratio stayed within 2.4-3.1x.
    """
    # Measured, not assumed: on CPUs without AMX, oneDNN's bf16 matmuls and convolutions are
    # slower than MKL's fp32 ones (here 176 vs 269 GFLOP/s for a 510x1024x4096 linear).
    candidates = list(fidelity)  # fp32 too: our fp32 path is itself faster than generate()
    within = [m for m in candidates if fidelity[m][0] == 1.0 and fidelity[m][1] <= 0.01]

    def mean_speedup(k: str) -> float:  # geometric mean over the clip lengths: each length counts the same
        return statistics.geometric_mean(m["generate"] / m[k] for m in meds.values())

    fastest = max(within or candidates, key=mean_speedup)
    label = "fastest CPU mode within the fidelity bound" if within else "fastest CPU mode; none within the bound"
    for seconds, m in meds.items():
        speedup = m["generate"] / m[fastest]
        by_mins = mins[seconds]["generate"] / mins[seconds][fastest]
        rows.append(
            (
                f"{fastest} ({label}) speed-up vs generate(), {seconds} s",
                f"{speedup:.2f}x (mins: {by_mins:.2f}x)",
                ">= 2x",
                verdict(speedup >= 2),
            )
        )
    agree, diff = fidelity[fastest]
    rows.append((f"{fastest} top-1 agreement (20 clips)", f"{agree:.0%}", "100%", verdict(agree == 1.0)))
    rows.append((f"{fastest} max score difference", f"{diff:.4f}", "<= 0.01", verdict(diff <= 0.01)))
    overall = max(candidates, key=mean_speedup)
    if overall != fastest:
        speedups = ", ".join(f"{m['generate'] / m[overall]:.2f}x" for m in meds.values())
        rows.append(
            (
                f"(for reference) {overall}, fastest overall: speed-up 3/10/30 s; max score diff",
                f"{speedups}; {fidelity[overall][1]:.4f}",
                "",
                "INFO",
            )
        )


def fidelity_section(engines: dict, out: list[str]) -> dict[str, tuple[float, float]]:
    clips = []
    for i in range(20):
        text = TEXTS[i % len(TEXTS)]
        clips.append(speech_clip(text, VOICES[i % len(VOICES)], 110 + (i * 37) % 120, 20 + (i * 13) % 70))
    ref = [engines["fp32"].recognize(c, "utterance", extract_embedding=True) for c in clips]
    out.append("## Fidelity against fp32 (20 espeak-ng clips, 1.2-5 s; random weights)\n")
    out.append("| mode | top-1 agreement | max abs score diff | min embedding cosine |")
    out.append("|---|---|---|---|")
    fidelity = {"fp32": (1.0, 0.0)}
    for mode in [m for m in engines if m != "fp32"]:
        got = [engines[mode].recognize(c, "utterance", extract_embedding=True) for c in clips]
        agree = sum(a.emotion == b.emotion for a, b in zip(ref, got, strict=True)) / len(clips)
        diff = max(abs(a.scores[k] - b.scores[k]) for a, b in zip(ref, got, strict=True) for k in a.scores)
        cos = min(
            float(a.embedding @ b.embedding / np.linalg.norm(a.embedding) / np.linalg.norm(b.embedding))
            for a, b in zip(ref, got, strict=True)
        )
        out.append(f"| {mode} | {agree:.0%} | {diff:.4f} | {cos:.5f} |")
        fidelity[mode] = (agree, diff)
    out.append("")
    return fidelity


def load_section(model: str, repeats: int, out: list[str], rows: list[tuple]) -> None:
    results: dict[str, list[dict]] = {"funasr": [], "ours": []}
    for _ in range(repeats):
        for mode in results:  # interleaved
            proc = subprocess.run(
                [sys.executable, "-c", LOAD_SCRIPT, mode, model], capture_output=True, text=True, cwd=ROOT, check=True
            )
            results[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = {m: {k: min(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
    out.append(f"## Loading (fresh subprocess each, min of {repeats}, after `import funasr`)\n")
    out.append("| loader | load s | peak RSS after load (MB) | peak RSS after first 3 s call (MB) |")
    out.append("|---|---|---|---|")
    for m, label in (("funasr", "FunASR AutoModel (own load)"), ("ours", "EmotionEngine.load (lean)")):
        b = best[m]
        out.append(f"| {label} | {b['load_s']:.2f} | {b['rss_load_mb']:.0f} | {b['rss_first_call_mb']:.0f} |")
    out.append("")
    rss = best["ours"]["rss_first_call_mb"] / best["funasr"]["rss_first_call_mb"]
    speed = best["ours"]["load_s"] / best["funasr"]["load_s"]
    rows.append(("load peak RSS vs FunASR's load (incl. first call)", f"{rss:.2f}x", "<= 0.6x", verdict(rss <= 0.6)))
    rows.append(("load time vs FunASR's load", f"{speed:.2f}x", "<= 1.0x", verdict(speed <= 1.0)))


def http_section(model: str, engine, repeats: int, out: list[str], rows: list[tuple]) -> None:
    import httpx
    import soundfile as sf

    from tests.server_util import ServerProcess

    clip = speech_clip(TEXTS[2] + " " + TEXTS[3], "en-gb", 150, 50, 5.0)
    buf = io.BytesIO()
    sf.write(buf, clip, 16000, format="WAV", subtype="PCM_16")
    wav = buf.getvalue()
    decoded = sf.read(io.BytesIO(wav), dtype="float32")[0]
    form = {"granularity": "utterance", "extract_embedding": "true"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"E2V_MODEL": model, "E2V_DEVICE": "cpu", "E2V_PRECISION": "fp32", "E2V_OUTPUT_DIR": tmp}
            with ServerProcess(env, log_path=Path(tmp) / "server.log") as server, httpx.Client(timeout=120) as client:

                def post():
                    r = client.post(server.url + "/api/v1/recognize", files={"file": ("a.wav", wav)}, data=form)
                    r.raise_for_status()

                def engine_seconds() -> float:  # the server's own engine time so far (its /metrics)
                    text = client.get(server.url + "/metrics").text
                    line = next(x for x in text.splitlines() if x.startswith(INFERENCE_SUM))
                    return float(line.split()[-1])

                post()
                api, ours, paired = [], [], []
                for _ in range(repeats):  # interleaved; the server is idle while the engine runs here
                    before = engine_seconds()
                    api.append(timed(post))
                    paired.append(api[-1] / (engine_seconds() - before))
                    ours.append(timed(engine.recognize, decoded, "utterance", True))
    except Exception as exc:  # no API yet, or it failed: say so rather than guess
        rows.append(("HTTP API 5 s clip vs engine call", f"{type(exc).__name__}", "<= 1.15x", "SKIP"))
        return
    across = min(api) / min(ours)  # catches a server that runs the engine slower (it did: Gradio's 1 kHz polling)
    ratio = max(across, statistics.median(paired))
    out.append("## REST API (5 s clip, multipart, utterance + embedding)\n")
    out.append(
        f"POST /api/v1/recognize min {min(api):.3f} s, p50 {statistics.median(api):.3f} s; "
        f"engine.recognize here min {min(ours):.3f} s, p50 {statistics.median(ours):.3f} s "
        f"(another process: {across:.3f}x by the mins).\n"
        f"Each request against the engine call inside the server for that same request "
        f'(`e2v_recognition_stage_seconds{{stage="inference"}}`): '
        + ", ".join(f"{r:.3f}x" for r in paired)
        + f"; median {statistics.median(paired):.3f}x. Judged: the larger of the two.\n"
    )
    rows.append(("HTTP API 5 s clip vs engine call", f"{ratio:.3f}x", "<= 1.15x", verdict(ratio <= 1.15)))


def machine() -> str:
    import torch

    from emotion2vec_webui.bench.benchmark import cpu_model
    from emotion2vec_webui.model.resolve import cpu_threads

    cpu = cpu_model()
    return f"{cpu}, {cpu_threads()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=6, help="timed calls per contender and clip length")
    parser.add_argument("--load-repeats", type=int, default=2)
    parser.add_argument(
        "--interleave-calls",
        action="store_true",
        help="alternate single calls between contenders (the earlier method) instead of back-to-back runs",
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--record", type=Path, help="also write the report (Markdown) to this file")
    args = parser.parse_args()
    model = os.environ.get("E2V_MODEL")
    if not model:
        sys.exit("set E2V_MODEL to a model directory (e.g. emotion2vec-webui make-test-model /tmp/m --size large)")
    from emotion2vec_webui.model.resolve import quiet_funasr

    with quiet_funasr():
        import funasr  # noqa: F401

    from emotion2vec_webui.model.resolve import marker_info

    marker = marker_info(Path(model)) if Path(model).is_dir() else {}
    weights = (
        f"random weights, {marker.get('size')}, {marker.get('parameters', 0) / 1e6:.0f}M parameters"
        if marker
        else "real weights"
    )
    out = [
        f"# Engine vs raw FunASR — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
        f"Machine: {machine()}. Model: {model} ({weights}).\n",
    ]
    rows: list[tuple] = []
    modes, meds, mins = speed_section(model, args.repeats, out, rows, args.interleave_calls)
    from emotion2vec_webui.engine.engine import EmotionEngine

    engines = {mode: EmotionEngine.load(model, device="cpu", precision=mode) for mode in modes}
    fastest_rows(meds, mins, fidelity_section(engines, out), rows)
    if args.skip_http:
        rows.append(("HTTP API 5 s clip vs engine call", "skipped", "<= 1.15x", "SKIP"))
    else:
        http_section(model, engines["fp32"], args.repeats, out, rows)
    engines.clear()
    if args.skip_load:
        rows.append(("load", "skipped", "", "SKIP"))
    else:
        load_section(model, args.load_repeats, out, rows)
    out.append("## Targets\n")
    out.append("| target | measured | goal | verdict |")
    out.append("|---|---|---|---|")
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(out) + "\n"
    print(text)
    if args.record:
        tmp = args.record.with_suffix(".tmp")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, args.record)
    return 0 if all(r[3] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
