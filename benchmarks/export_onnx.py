"""The ONNX export against the torch engine and FunASR, side by side in one run.

    python benchmarks/export_onnx.py --large /tmp/m_large --base /tmp/m_base \\
        [--onnx-env /tmp/onnx-venv] [--repeats 3] [--record benchmarks/export_onnx.md]

(``emotion2vec-webui make-test-model DIR --size large|base`` builds the stand-in
models; the exports are written to a temporary folder by ``export``.)

1. Fidelity, in this process: the fp32 export (through the engine, as
   E2V_MODEL=<export> serves it) against the torch engine in fp32 on 3, 10 and
   30 s speech clips, one by one and in batches of 4 (scores within 1e-4,
   embeddings within 1e-3 relative); the int8 export, torch bf16 (what ``auto``
   picks on AMX) and the base model's int8 export against fp32 on 20 espeak-ng
   clips (top-1 agreement 100%, max score difference <= 0.01).
2. Speed and memory, each contender in a fresh process, one after another:
   load time (import excluded for FunASR, included for nothing else: each
   worker imports its stack first), peak RSS (VmHWM) after load and first call,
   p50 seconds per call at 3, 10 and 30 s. Contenders: torch engine fp32 and
   int8, the exported fp32 and int8 graphs run by onnxruntime alone (no torch
   imported), FunASR's ``AutoModel.generate()``, and the base model's int8 graph.
3. Installed size of the ONNX-only environment (a venv built from
   requirements-onnx-runtime.txt, ``--onnx-env``) against the full one (this
   venv's dependency closure of emotion2vec-webui, without test tools).
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

from benchmarks.engine_vs_funasr import TEXTS, VOICES, speech_clip  # noqa: E402

WORKER = r"""
import json, sys, time
import numpy as np
kind, path, clips_dir, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
if kind == "generate":
    from emotion2vec_webui.model.resolve import quiet_funasr
    with quiet_funasr():
        import funasr  # noqa: F401  (imported before the load timer starts, as engine_vs_funasr.py does)
t0 = time.perf_counter()
if kind == "generate":
    from emotion2vec_webui.model.resolve import load_automodel, resolve_model
    automodel = load_automodel(resolve_model(path), "cpu")
    run = lambda x: automodel.generate(x, granularity="utterance", extract_embedding=True, disable_pbar=True)
elif kind.startswith("graph"):  # onnxruntime + numpy only: the export as infer.py runs it
    import os
    from emotion2vec_webui.model.exported import load_export
    model = load_export(path, kind == "graph-int8", len(os.sched_getaffinity(0)))
    run = lambda x: model.run(x[None])
else:
    from emotion2vec_webui.engine.engine import EmotionEngine
    engine = EmotionEngine.load(path, device="cpu", precision=kind, warmup=False)
    run = lambda x: engine.recognize(x, "utterance", extract_embedding=True)
load_s = time.perf_counter() - t0
rss_load = peak_mb()
run(np.load(f"{clips_dir}/3.npy"))
out = {"load_s": load_s, "rss_load_mb": rss_load, "rss_mb": peak_mb(), "p50": {},
       "torch_imported": "torch" in sys.modules}
for seconds in (3, 10, 30):
    clip = np.load(f"{clips_dir}/{seconds}.npy")
    run(clip)
    times = []
    for _ in range(repeats if seconds < 30 else max(2, repeats - 1)):
        t = time.perf_counter(); run(clip); times.append(time.perf_counter() - t)
    out["p50"][seconds] = sorted(times)[len(times) // 2] if len(times) % 2 else sum(sorted(times)[len(times) // 2 - 1 : len(times) // 2 + 1]) / 2
out["rss_mb"] = peak_mb()
print("RESULT " + json.dumps(out), flush=True)
"""


def fidelity_clips() -> list[np.ndarray]:
    return [
        speech_clip(TEXTS[i % len(TEXTS)], VOICES[i % len(VOICES)], 110 + (i * 37) % 120, 20 + (i * 13) % 70)
        for i in range(20)
    ]


def agreement(ref, got) -> tuple[float, float]:
    agree = sum(a.emotion == b.emotion for a, b in zip(ref, got, strict=True)) / len(ref)
    diff = max(abs(a.scores[k] - b.scores[k]) for a, b in zip(ref, got, strict=True) for k in a.scores)
    return agree, diff


def fidelity_section(large: str, base: str, exports: dict[str, Path], out: list[str]) -> None:
    from emotion2vec_webui.engine.engine import EmotionEngine

    clips = fidelity_clips()
    long = {s: speech_clip(" ".join(TEXTS), "en-us", 160, 50, s) for s in (3, 10, 30)}
    torch32 = EmotionEngine.load(large, device="cpu", precision="fp32")
    onnx32 = EmotionEngine.load(str(exports["large"]), device="cpu", precision="fp32")
    out.append("## Fidelity (large test model; random weights)\n")
    out.append("fp32 export (ONNX Runtime, as `E2V_MODEL=<export>` runs it) against the torch engine in fp32:\n")
    out.append("| clips | max abs score diff | max embedding diff / max abs embedding | bound |")
    out.append("|---|---|---|---|")
    for seconds, clip in long.items():
        a, b = torch32.recognize(clip), onnx32.recognize(clip)
        ds = max(abs(a.scores[k] - b.scores[k]) for k in a.scores)
        de = float(np.abs(a.embedding - b.embedding).max() / np.abs(a.embedding).max())
        out.append(f"| {seconds} s, one by one | {ds:.2e} | {de:.2e} | 1e-4 / 1e-3 |")
    batch = [clips[i] for i in range(8)] + [long[10], long[10][:150000], long[30]]
    for size in (1, 4):
        a, b = torch32.recognize_batch(batch, max_batch=size), onnx32.recognize_batch(batch, max_batch=size)
        ds = max(abs(x.scores[k] - y.scores[k]) for x, y in zip(a, b, strict=True) for k in x.scores)
        de = max(float(np.abs(x.embedding - y.embedding).max() / np.abs(x.embedding).max()) for x, y in zip(a, b, strict=True))
        out.append(f"| 11 clips 1.2-30 s, recognize_batch(max_batch={size}) | {ds:.2e} | {de:.2e} | 1e-4 / 1e-3 |")
    out.append("")
    ref = [torch32.recognize(c) for c in clips]
    got = {}
    int8 = EmotionEngine.load(str(exports["large"]), device="cpu", precision="int8")
    got["int8 export (model.int8.onnx)"] = [int8.recognize(c) for c in clips]
    del int8
    bf16 = EmotionEngine.load(large, device="cpu", precision="bf16")
    got["torch bf16 (auto on AMX; bf16 emulated here, no AMX)"] = [bf16.recognize(c) for c in clips]
    del bf16
    out.append("Against torch fp32 on 20 espeak-ng clips (1.2-5 s; varied texts, voices, speeds, pitches):\n")
    out.append("| mode | top-1 agreement | max abs score diff | bound |")
    out.append("|---|---|---|---|")
    for name, results in got.items():
        agree, diff = agreement(ref, results)
        out.append(f"| {name} | {agree:.0%} | {diff:.4f} | 100% / 0.01 |")
    del torch32, onnx32
    base32 = EmotionEngine.load(base, device="cpu", precision="fp32")
    base8 = EmotionEngine.load(str(exports["base"]), device="cpu", precision="int8")
    agree, diff = agreement([base32.recognize(c) for c in clips], [base8.recognize(c) for c in clips])
    out.append(f"| base model, int8 export vs base torch fp32 | {agree:.0%} | {diff:.4f} | 100% / 0.01 |")
    out.append("")


def speed_section(large: str, base: str, exports: dict[str, Path], repeats: int, out: list[str]) -> dict:
    contenders = [
        ("torch engine fp32", "fp32", large),
        ("torch engine int8", "int8", large),
        ("exported fp32 graph", "graph-fp32", str(exports["large"])),
        ("exported int8 graph", "graph-int8", str(exports["large"])),
        ("FunASR generate()", "generate", large),
        ("base: exported int8 graph", "graph-int8", str(exports["base"])),
        ("base: torch engine fp32", "fp32", base),
    ]
    results = {}
    with tempfile.TemporaryDirectory() as clips_dir:
        for seconds in (3, 10, 30):
            np.save(f"{clips_dir}/{seconds}.npy", speech_clip(TEXTS[0] + " " + TEXTS[1], "en-us", 160, 50, seconds))
        for name, kind, path in contenders:
            print(f"speed: {name} …", file=sys.stderr, flush=True)
            ran = subprocess.run(
                [sys.executable, "-c", WORKER, kind, path, clips_dir, str(repeats)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=1800,
            )
            line = [x for x in ran.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise RuntimeError(f"{name} failed: {ran.stderr[-2000:]}")
            results[name] = json.loads(line[0][7:])
            print(f"speed: {name}: {results[name]}", file=sys.stderr, flush=True)
    ref = results["FunASR generate()"]
    out.append(f"## Speed and memory (each in a fresh process; p50 of {repeats} calls, {max(2, repeats - 1)} at 30 s)\n")
    out.append(
        "| contender | torch imported | load s | peak RSS MB (load + first call) | p50 3 s | p50 10 s | p50 30 s "
        "| load time vs FunASR | peak RSS vs FunASR |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        out.append(
            f"| {name} | {'yes' if r['torch_imported'] else 'no'} | {r['load_s']:.2f} | {r['rss_mb']:.0f} "
            f"| {r['p50']['3']:.3f} | {r['p50']['10']:.3f} | {r['p50']['30']:.3f} "
            f"| {r['load_s'] / ref['load_s']:.2f}x | {r['rss_mb'] / ref['rss_mb']:.2f}x |"
        )
    out.append("")
    return results


def _dist_sizes(python: str, roots: list[str], skip: set[str]) -> tuple[int, int]:
    """(bytes, count) of the installed distributions ``roots`` need, by their RECORD files, in ``python``'s env."""
    code = r"""
import json, os, re, sys
from importlib import metadata
roots, skip = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
seen, todo = set(), [norm(r) for r in roots]
while todo:
    name = todo.pop()
    if name in seen or name in skip or name not in dists:
        continue
    seen.add(name)
    for req in dists[name].requires or []:
        if "extra ==" in req:
            continue
        todo.append(norm(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
total = 0
for name in seen:
    d = dists[name]
    for f in d.files or []:
        p = d.locate_file(f)
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
print(json.dumps([total, len(seen)]))
"""
    ran = subprocess.run([python, "-c", code, json.dumps(roots), json.dumps(sorted(skip))], capture_output=True, text=True)
    return tuple(json.loads(ran.stdout))


def du_mb(path: str) -> float:
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0]) / 1e6


def size_section(onnx_env: str | None, out: list[str]) -> None:
    out.append("## Installed size\n")
    full, n_full = _dist_sizes(sys.executable, ["emotion2vec-webui"], set())
    out.append("| environment | packages | installed size |")
    out.append("|---|---|---|")
    out.append(
        f"| full (`pip install emotion2vec-webui`: torch CPU, FunASR, …; this venv's dependency closure) "
        f"| {n_full} | {full / 1e6:.0f} MB |"
    )
    if onnx_env:
        python = str(Path(onnx_env) / "bin" / "python")
        reqs = [
            line.split(";")[0].split(">")[0].split("=")[0].strip()
            for line in (ROOT / "requirements-onnx-runtime.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        slim, n_slim = _dist_sizes(python, [*reqs, "emotion2vec-webui"], set())
        out.append(
            f"| ONNX-only (`requirements-onnx-runtime.txt` + the package with `--no-deps`) | {n_slim} "
            f"| {slim / 1e6:.0f} MB (whole venv on disk: {du_mb(onnx_env):.0f} MB) |"
        )
        out.append("")
        out.append(f"ONNX-only / full: {slim / full:.2f}x.")
    out.append("")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--large", required=True, help="large model directory (make-test-model --size large)")
    p.add_argument("--base", required=True, help="base model directory (make-test-model --size base)")
    p.add_argument("--onnx-env", help="a venv built from requirements-onnx-runtime.txt (for its size)")
    p.add_argument("--exports", help="folder for the exports (default: a temporary one)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-fidelity", action="store_true")
    p.add_argument("--record", type=Path, help="also write the report (markdown) here")
    args = p.parse_args()
    import torch

    from emotion2vec_webui.bench.benchmark import cpu_model
    from emotion2vec_webui.model.export import export_model
    from emotion2vec_webui.model.resolve import quiet_funasr

    work = Path(args.exports or tempfile.mkdtemp(prefix="e2v-export-bench-"))
    exports = {"large": work / "large", "base": work / "base"}
    t0 = time.perf_counter()
    for key, model in (("large", args.large), ("base", args.base)):
        if not (exports[key] / "model.int8.onnx").is_file():
            print(f"exporting {key} …", file=sys.stderr, flush=True)
            with quiet_funasr():
                export_model(exports[key], model, quantize="int8")
    export_s = time.perf_counter() - t0
    flags = open("/proc/cpuinfo").read()
    out = [
        f"# ONNX export vs torch engine vs FunASR — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores ({'AMX' if 'amx_bf16' in flags else 'no AMX'}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{__import__('onnxruntime').__version__}, Python {platform.python_version()}. Models: {args.large} "
        f"(large), {args.base} (base), random weights. Exporting both (fp32 + int8): {export_s:.0f} s.\n",
    ]
    if not args.skip_fidelity:
        fidelity_section(args.large, args.base, exports, out)
    print("\n".join(out), flush=True)
    if not args.skip_speed:
        speed_section(args.large, args.base, exports, args.repeats, out)
    size_section(args.onnx_env, out)
    graph_mb = {k: (v / "model.onnx").stat().st_size / 1e6 for k, v in exports.items()}
    int8_mb = {k: (v / "model.int8.onnx").stat().st_size / 1e6 for k, v in exports.items()}
    out.append(
        f"Graph files: large {graph_mb['large']:.0f} MB fp32, {int8_mb['large']:.0f} MB int8; "
        f"base {graph_mb['base']:.0f} MB fp32, {int8_mb['base']:.0f} MB int8.\n"
    )
    report = "\n".join(out)
    print(report)
    if args.record:
        args.record.write_text(report + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
