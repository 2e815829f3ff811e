"""GPU serving: the scheduler's padded batches against one request at a time, at 1/8/32/128 concurrent clients.

One command on a machine with an NVIDIA GPU::

    python benchmarks/gpu_serving.py

It builds a random-weight *large* model (``emotion2vec-webui make-test-model DIR --size large``: the real large
model's shape and compute) unless ``--model`` names one, loads it on ``cuda`` in the default precision (bf16 where
the GPU has it, else fp16), and drives the service in-process (the scheduler, its worker, :class:`QueuedEngine`;
no HTTP, no decoding: the model path) with closed-loop clients sending 3 s clips and mixed 1-10 s clips. For each
client count it prints, for ``E2V_BATCH_WAIT_MS=0`` (one at a time) and the per-device default, run alternately:
clips/s, real-time factor (audio seconds per wall second), p50/p95 latency, peak GPU memory, and the mean batch.
Then the parity figures: padded batches of mixed lengths against one-at-a-time calls, in fp32 and the default
precision. Without a GPU it prints one "no GPU" line and exits 0 (``--device cpu`` runs the same code on the CPU,
for a smoke test with a small model).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 16000


def clips(kind: str, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    seconds = [3.0] * n if kind == "3s" else list(rng.uniform(1.0, 10.0, n))
    return [(0.1 * rng.standard_normal(int(RATE * s))).astype(np.float32) for s in seconds]


def drive(service, waves: list[np.ndarray], clients: int, per_client: int) -> dict:
    """``clients`` closed-loop clients, ``per_client`` requests each, through ``service.classify``."""
    latencies: list[float] = []
    audio = [0.0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    before = dict(service.scheduler.stats)

    def client(k: int) -> None:
        barrier.wait()
        for j in range(per_client):
            w = waves[(k * 7 + j * 3) % len(waves)]
            t0 = time.perf_counter()
            service.classify(w, client=f"c{k}")
            took = time.perf_counter() - t0
            with lock:
                latencies.append(took)
                audio[0] += len(w) / RATE

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    calls = service.scheduler.stats["calls"] - before.get("calls", 0)
    requests = service.scheduler.stats["requests"] - before.get("requests", 0)
    return {"wall": wall, "lat": latencies, "audio": audio[0], "batch": requests / max(calls, 1)}


def parity(engine_for, waves: list[np.ndarray]) -> list[str]:
    """Max score / embedding difference between padded batches (two, sorted by length) and one-at-a-time calls."""
    from emotion2vec_webui.engine.result import result_from_features

    out = []
    waves = sorted(waves, key=len)
    for precision in ("fp32", "auto"):
        engine = engine_for(precision)
        single = [engine.recognize(w, "utterance", True) for w in waves]
        half = len(waves) // 2
        batched = []
        for group in (waves[:half], waves[half:]):
            batched += [result_from_features(engine.head_logits, f, "utterance", True, 0.0)
                        for f in engine.features_batch(group)]  # fmt: skip
        ds = max(max(abs(a.scores[k] - b.scores[k]) for k in a.scores) for a, b in zip(batched, single, strict=True))
        de = max(float(np.abs(a.embedding - b.embedding).max()) for a, b in zip(batched, single, strict=True))
        out.append(f"parity {engine.info.dtype:>9}: max score difference {ds:.2e}, max embedding difference {de:.2e} "
                   f"({len(waves)} clips of 1-10 s in two padded batches against one at a time)")  # fmt: skip
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: a random-weight large model built in a temp folder)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu, for a smoke test)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--clients", default="1,8,32,128")
    p.add_argument("--requests", type=int, default=256, help="requests per run (at least 2 per client)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False on this machine; nothing measured "
              "(run this on a machine with an NVIDIA GPU and a CUDA build of PyTorch)")  # fmt: skip
        return 0

    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.runs.inference.scheduler import policy_for
    from emotion2vec_webui.runs.inference.service import Service

    model = args.model
    if not model:
        from emotion2vec_webui.model.standins import make_test_model

        with quiet_funasr():
            model = str(make_test_model(Path(tempfile.mkdtemp(prefix="e2v-gpu-")) / "large", "large", seed=0))
    engines: dict[str, EmotionEngine] = {}

    def engine_for(precision: str) -> EmotionEngine:
        if precision not in engines:
            with quiet_funasr():
                engines[precision] = EmotionEngine.load(model, device=args.device, precision=precision)
        return engines[precision]

    engine = engine_for(args.precision)
    name = torch.cuda.get_device_name(torch.device(args.device)) if cuda else "CPU"
    print(f"device {args.device} ({name}), model {Path(model).name}, {engine.info.dtype}, "
          f"{engine.info.num_parameters / 1e6:.0f}M parameters", flush=True)  # fmt: skip
    settings = dataclasses.replace(load_settings(), device=args.device, max_queue=4096)
    services = {}
    for mode, wait in (("one at a time", 0.0), ("batched", None)):
        svc = Service(dataclasses.replace(settings, batch_wait_ms=wait), engine)
        svc.start()
        services[mode] = svc
        print(f"{mode}: {policy_for(engine, svc.settings).reason}", flush=True)
    for kind in ("3s", "mixed"):
        waves = clips(kind, 64, seed=1)
        for svc in services.values():  # warm-up: kernels, allocator, the first batch shapes
            drive(svc, waves, 8, 2)
        print(f"\n{kind} clips | clients | mode | clips/s | real-time factor | p50 s | p95 s | peak GPU MiB | mean batch")
        for clients in [int(c) for c in args.clients.split(",") if c]:
            per_client = max(2, args.requests // clients)
            runs: dict[str, list[dict]] = {m: [] for m in services}
            for r in range(args.rounds):
                for mode in (list(services) if r % 2 == 0 else list(services)[::-1]):
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    got = drive(services[mode], waves, clients, per_client)
                    got["mem"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
                    runs[mode].append(got)
            for mode, got in runs.items():
                wall, audio = sum(g["wall"] for g in got), sum(g["audio"] for g in got)
                lat = [x for g in got for x in g["lat"]]
                print(f"{kind} | {clients} | {mode} | {len(lat) / wall:.1f} | {audio / wall:.1f}x | "
                      f"{np.percentile(lat, 50):.3f} | {np.percentile(lat, 95):.3f} | "
                      f"{max(g['mem'] for g in got):.0f} | {statistics.mean(g['batch'] for g in got):.1f}", flush=True)
    for svc in services.values():
        svc.stop()
    print()
    parity(engine_for, clips("mixed", 16, seed=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
