"""``emotion2vec-webui bench``: Emotion2Vec+ and Hugging Face peers, side by side.

Each model is measured in its own subprocess, so its peak RSS is its own
(``ru_maxrss`` of a process that loaded nothing else) and one model's
caches do not speed up the next. Per model: parameters, load time (after
the library is imported), latency p50/p95 over ``--repeats`` calls for each
clip length (after one untimed warm-up call per length), real-time factor,
peak RSS and peak GPU memory; with ``--dataset``, accuracy and weighted F1.

Accuracy is compared on the classes every model in the run can output
(SUPERB ER peers know four: neutral, happy, angry, sad): each model's
prediction is the top score among those shared classes, over the clips whose
reference label is one of them. Metrics come from :mod:`evaluation`.

Output: a Markdown table on stdout (the comparison users read) and, with
``--output``, the full JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic

_WORKER_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Latency:
    duration_s: float  # clip length
    p50_s: float  # median seconds per call
    p95_s: float
    min_s: float
    rtf: float  # p50 / duration


@dataclass(frozen=True)
class ModelBench:
    model: str  # as named on the command line
    kind: str  # "emotion2vec" or "hf"
    ok: bool  # False when the model could not be loaded or run
    error: str | None = None  # why, when not ok
    parameters: int = 0
    random_weights: bool = False
    device: str = ""
    dtype: str = ""
    load_s: float = 0.0  # build/load time, library already imported
    latency: list[Latency] = field(default_factory=list)
    rss_after_load_mb: float = 0.0
    peak_rss_mb: float = 0.0  # peak resident memory of the model's own process
    peak_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated, None on CPU
    classes: list[str] = field(default_factory=list)  # our classes the model can output
    item_scores: list[dict[str, float]] = field(default_factory=list)  # dataset clips, scores by our class
    accuracy: float | None = None
    weighted_f1: float | None = None
    evaluated: int = 0  # dataset clips scored (reference in the shared classes)


def parse_durations(text: str) -> list[float]:
    """``"3,10,30"`` → ``[3.0, 10.0, 30.0]``."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise E2VError("bad_request", f"--durations: {text!r} is not a comma-separated list of seconds") from exc
    if not values or any(v < 0.1 or v > 600 for v in values):
        raise E2VError("bad_request", "--durations: each length must be between 0.1 and 600 seconds")
    return values


def bench_clip(seconds: float) -> np.ndarray:
    """A deterministic speech-like clip of ``seconds`` at 16 kHz (espeak-ng speech tiled, else a tone with noise)."""
    from emotion2vec_webui.audio.signals import espeak_available, noise, speech, tone

    n = int(round(seconds * SAMPLE_RATE))
    if espeak_available():
        import soxr

        data, rate = speech("The meeting moved to Thursday, and nobody told me. I waited for an hour in the rain.")
        data = soxr.resample(data, rate, SAMPLE_RATE).astype(np.float32)
        return np.resize(data, n).astype(np.float32)
    return (tone(seconds, SAMPLE_RATE)[:, 0] + noise(seconds, SAMPLE_RATE)[:, 0])[:n].astype(np.float32)


def cpu_model() -> str:
    """The processor's name (for benchmark records: ``bench``'s machine line, the scripts in benchmarks/), from /proc/cpuinfo where there is one."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM).

    Not ``ru_maxrss``: on Linux that survives ``exec`` and so reports the
    parent's peak when the parent was bigger (it builds the stand-ins).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; macOS: bytes


def _load(spec: dict):
    """(classify(waveform) → scores by our class, info dict) for one model spec."""
    from emotion2vec_webui.bench.peers import HFPeer, is_peer

    if is_peer(spec["model"]):
        import transformers  # noqa: F401  (imported before the load timer starts)

        peer = HFPeer.load(spec["model"], spec["device"], spec["precision"])
        info = peer.info
        return peer.shared_scores, {
            "kind": "hf",
            "parameters": info.num_parameters,
            "random_weights": info.random_weights,
            "device": info.device,
            "dtype": info.dtype,
            "load_s": info.load_s,
        }
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model import funasr_import
    from emotion2vec_webui.model.resolve import quiet_funasr

    with quiet_funasr():  # FunASR imported before the load timer starts
        funasr_import.registry("Emotion2vec")
        funasr_import.package().AutoModel  # noqa: B018  (imports funasr.auto.auto_model)
    t0 = time.perf_counter()
    engine = EmotionEngine.load(spec["model"], spec["hub"], spec["device"], spec["precision"], warmup=False)
    load_s = time.perf_counter() - t0

    def classify(waveform: np.ndarray) -> dict[str, float]:
        return engine.recognize(waveform, "utterance", extract_embedding=False).scores

    info = engine.info
    return classify, {
        "kind": "emotion2vec",
        "parameters": info.num_parameters,
        "random_weights": info.random_weights,
        "device": info.device,
        "dtype": info.dtype,
        "load_s": load_s,
    }


def run_worker(spec: dict) -> ModelBench:
    """Measure one model in this process (called in a fresh subprocess by :func:`cmd_bench`)."""
    import torch

    from emotion2vec_webui.labels import EMOTIONS

    on_cuda = str(spec["device"]).startswith("cuda") or (spec["device"] == "auto" and torch.cuda.is_available())
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        classify, info = _load(spec)
    except E2VError as exc:
        return ModelBench(spec["model"], "hf" if spec["model"].startswith("hf") else "emotion2vec", False, exc.message)
    rss_after_load = _peak_rss_mb()
    latency = []
    for seconds in spec["durations"]:
        clip = bench_clip(seconds)
        classify(clip)  # warm-up: first call per length (allocator, kernels)
        times = []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            classify(clip)
            if on_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        p50 = float(np.percentile(times, 50))
        latency.append(Latency(seconds, p50, float(np.percentile(times, 95)), min(times), p50 / seconds))
    items = []
    if spec.get("dataset"):
        from emotion2vec_webui.audio.decode import decode_audio

        for path in spec["dataset"]:
            try:
                items.append(classify(decode_audio(path, source_name=Path(path).name).waveform))
            except E2VError:
                items.append({})
    probe = classify(bench_clip(1.0))
    return ModelBench(
        model=spec["model"],
        ok=True,
        latency=latency,
        rss_after_load_mb=rss_after_load,
        peak_rss_mb=_peak_rss_mb(),
        peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None,
        classes=[c for c in EMOTIONS if c in probe],
        item_scores=items,
        **info,
    )


def dataset_items(dataset: Path) -> list[tuple[str, str]]:
    """(file, our class) for every labelled clip of a RAVDESS/CREMA-D folder or a CSV/list of path,label."""
    from emotion2vec_webui.jobs.evaluation import map_label
    from emotion2vec_webui.jobs.inputs import discover_inputs

    out = []
    for item in discover_inputs(str(dataset)):
        cls = map_label(item.label) if item.label else None
        if cls is not None:
            out.append((item.file, cls))
    if not out:
        raise E2VError("bad_request", f"--dataset {dataset}: no clips with a known emotion label found")
    return out


def score_dataset(results: list[ModelBench], references: list[str]) -> list[ModelBench]:
    """Accuracy and weighted F1 of each model on the classes all of them share."""
    from dataclasses import replace

    from emotion2vec_webui.jobs.evaluation import evaluate

    ok = [r for r in results if r.ok]
    if not ok or not references:
        return results
    shared = set(references)
    for r in ok:
        shared &= set(r.classes)
    out = []
    for r in results:
        if not r.ok:
            out.append(r)
            continue
        ref, pred = [], []
        for label, scores in zip(references, r.item_scores, strict=True):
            if label in shared and scores:
                ref.append(label)
                pred.append(max(shared, key=lambda c: scores.get(c, 0.0)))
        if ref:
            m = evaluate(ref, pred)
            out.append(replace(r, accuracy=m.accuracy, weighted_f1=m.weighted_f1, evaluated=len(ref)))
        else:
            out.append(r)
    return out


def markdown_table(results: list[ModelBench], durations: list[float], with_accuracy: bool) -> str:
    """The comparison as a Markdown table, one row per model."""

    def fmt_d(d: float) -> str:
        return f"{d:g} s"

    head = ["model", "params (M)", "load (s)"]
    for d in durations:
        head += [f"p50 {fmt_d(d)} (s)", f"p95 {fmt_d(d)} (s)"]
    head += [f"RTF ({fmt_d(durations[-1])})", "peak RSS (MB)", "peak GPU (MB)"]
    if with_accuracy:
        head += ["accuracy", "weighted F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        name = r.model + (" (random weights)" if r.random_weights else "")
        if not r.ok:
            error = (r.error or "").replace("|", "/")[:160]
            lines.append("| " + " | ".join([name, f"unavailable: {error}"] + [""] * (len(head) - 2)) + " |")
            continue
        row = [name, f"{r.parameters / 1e6:.1f}", f"{r.load_s:.2f}"]
        for lat in r.latency:
            row += [f"{lat.p50_s:.3f}", f"{lat.p95_s:.3f}"]
        row += [
            f"{r.latency[-1].rtf:.3f}",
            f"{r.peak_rss_mb:.0f}",
            "—" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:.0f}",
        ]
        if with_accuracy:
            row += [
                "—" if r.accuracy is None else f"{r.accuracy:.3f}",
                "—" if r.weighted_f1 is None else f"{r.weighted_f1:.3f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _measure_in_subprocess(spec: dict) -> ModelBench:
    with tempfile.TemporaryDirectory(prefix="e2v-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "emotion2vec_webui.bench.benchmark", json.dumps(spec), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_WORKER_TIMEOUT_S)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            kind = "hf" if spec["model"].startswith("hf") else "emotion2vec"
            return ModelBench(spec["model"], kind, False, f"worker failed ({proc.returncode}): {tail[0][:200]}")
        data = json.loads(out.read_text("utf-8"))
    data["latency"] = [Latency(**x) for x in data["latency"]]
    return ModelBench(**data)


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False))


def _worker_main(argv: list[str]) -> int:
    spec, out = json.loads(argv[0]), Path(argv[1])
    from emotion2vec_webui.logs import setup_logging

    setup_logging("WARNING", "text")
    result = run_worker(spec)
    out.write_text(json.dumps(asdict(result)), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
