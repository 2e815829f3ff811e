"""Serving throughput: the batching scheduler against one request at a time, side by side, through real HTTP.

For each precision it starts two ``emotion2vec-webui serve`` processes on the
same model (default: a random-weight *large* test model, the real large
model's shape and compute): ``old`` with ``E2V_BATCH_WAIT_MS=0`` (one request
at a time on the worker, as before the scheduler) and ``new`` with the
per-device default (``E2V_BATCH_WAIT_MS`` unset: on a CPU in fp32 no wait — the
worker batches what is already queued when lengths are within 10 %, up to 8
clips / 24 s; int8 one at a time, so its cells compare like with like; or
``--new-wait-ms`` for a wait). Closed-loop clients (each sends its next request as soon
as it is answered) post WAV clips to ``/api/v1/recognize``: 3 s clips, and
mixed clips of 1-10 s. Every cell (clip set x concurrency) runs on both
servers one after the other, the order alternating per round, so the load of
other work on the machine hits both alike; ratios are per round (min and
median over the rounds), latencies pooled over the rounds. The output ends
with issue 28's goals checked cell by cell (>= 1.1x at 8 clients with 3 s
clips in fp32, never below 0.95x, p95 at one client <= 1.05x of old's).

    python benchmarks/serving_throughput.py --rounds 4 --output benchmarks/serving_throughput.md
    python benchmarks/serving_throughput.py --size tiny --precisions fp32 --concurrency 1,4 --mixed-concurrency 4 \
        --rounds 1 --requests 4 --single-requests 2 --output -    # a smoke run: does it work (minutes, no figures)

``--parity`` also prints, engine level, how far padded batches of mixed-length
clips are from one-at-a-time calls in fp32, bf16 and int8.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server_util import ServerProcess, server_env  # noqa: E402

RATE = 16000


@dataclass
class Cell:
    precision: str
    clips: str  # "3s" or "mixed"
    concurrency: int
    wall: dict[str, list[float]] = field(default_factory=lambda: {"old": [], "new": []})  # per round
    count: dict[str, list[int]] = field(default_factory=lambda: {"old": [], "new": []})
    audio_s: dict[str, list[float]] = field(default_factory=lambda: {"old": [], "new": []})
    latency: dict[str, list[float]] = field(default_factory=lambda: {"old": [], "new": []})
    errors: dict[str, int] = field(default_factory=lambda: {"old": 0, "new": 0})

    def rate(self, mode: str, i: int) -> float:
        return self.count[mode][i] / self.wall[mode][i]


def wav_bytes(seconds: float, seed: int) -> bytes:
    from emotion2vec_webui.audio.signals import noise, tone, write_audio

    x = tone(seconds, RATE, freq=120 + 13 * (seed % 30))[:, 0] + noise(seconds, RATE, amp=0.05, seed=seed)[:, 0]
    with tempfile.TemporaryDirectory() as tmp:
        return write_audio(Path(tmp) / "c.wav", x.astype(np.float32), RATE, "wav").read_bytes()


def clip_sets() -> dict[str, list[tuple[bytes, float]]]:
    rng = np.random.default_rng(28)
    mixed = [float(s) for s in rng.uniform(1.0, 10.0, 24)]
    return {
        "3s": [(wav_bytes(3.0, i), 3.0) for i in range(8)],
        "mixed": [(wav_bytes(s, 100 + i), s) for i, s in enumerate(mixed)],
    }


def run_cell(url: str, clips: list[tuple[bytes, float]], concurrency: int, per_client: int):
    """``concurrency`` closed-loop clients, ``per_client`` requests each: (wall s, latencies, audio s, errors)."""
    latencies: list[float] = []
    audio = [0.0]
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            start.wait()
            for j in range(per_client):
                data, seconds = clips[(k * 7 + j * 3) % len(clips)]
                t0 = time.perf_counter()
                r = http.post("/api/v1/recognize", files={"file": ("c.wav", io.BytesIO(data), "audio/wav")},
                              data={"extract_embedding": "false"})  # fmt: skip
                took = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(took)
                        audio[0] += seconds
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, audio[0], errors[0]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def scheduler_line(server: ServerProcess) -> str:
    found = re.findall(r"scheduler: .*", server.log_tail(200_000))
    return found[-1] if found else "(no scheduler line)"


def policy_line(server: ServerProcess) -> str:
    found = re.findall(r"batching: .*", server.log_tail(10**9))  # said once, at start
    return found[-1] if found else "(no batching line)"


def bench_precision(model: str, root: Path, precision: str, sets, grid, rounds: int, per_client,
                    new_wait_ms: str = "auto") -> tuple[list, dict]:  # fmt: skip
    cells = [Cell(precision, name, c) for name, conc in grid for c in conc]
    env = {"precision": precision, "max_per_client": 0, "max_queue": 64}
    logs = {}
    with (
        ServerProcess(server_env(model, root / f"{precision}-old", batch_wait_ms=0, **env)) as old,
        ServerProcess(server_env(model, root / f"{precision}-new", batch_wait_ms=new_wait_ms, **env)) as new,
    ):
        servers = {"old": old, "new": new}
        for server in servers.values():  # warm each server up (first requests pay one-off costs)
            run_cell(server.url, sets["3s"], 2, 1)
        for r in range(rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for cell in cells:
                # one client: request by request, old and new alternating (load drifts within seconds here);
                # more: a whole run on each, the order alternating per round
                steps = [(m, 1) for _ in range(per_client(1)) for m in order] if cell.concurrency == 1 else [
                    (m, per_client(cell.concurrency)) for m in order]  # fmt: skip
                got = {m: [0.0, [], 0.0, 0] for m in order}
                for mode, n in steps:
                    wall, lat, audio, errors = run_cell(servers[mode].url, sets[cell.clips], cell.concurrency, n)
                    acc = got[mode]
                    acc[0] += wall
                    acc[1] += lat
                    acc[2] += audio
                    acc[3] += errors
                for mode, (wall, lat, audio, errors) in got.items():
                    cell.wall[mode].append(wall)
                    cell.count[mode].append(len(lat))
                    cell.audio_s[mode].append(audio)
                    cell.latency[mode] += lat
                    cell.errors[mode] += errors
                    print(f"  {precision} {cell.clips} c={cell.concurrency} round {r + 1} {mode}: "
                          f"{len(lat) / wall:.3f} clips/s, p50 {percentile(lat, 50):.2f} s", flush=True)  # fmt: skip
    for mode, server in servers.items():
        logs[mode] = f"{policy_line(server)}; {scheduler_line(server)}"
    return cells, logs


def table(cells: list[Cell]) -> list[str]:
    out = [
        "| precision | clips | clients | clips/s old | clips/s new | ratio min | ratio median | audio s/s new "
        "| p50 old / new (s) | p95 old / new (s) | p95 ratio | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        ratios = [c.rate("new", i) / c.rate("old", i) for i in range(len(c.wall["old"]))]
        rate = {m: sum(c.count[m]) / sum(c.wall[m]) for m in ("old", "new")}
        audio = sum(c.audio_s["new"]) / sum(c.wall["new"])
        p50 = {m: percentile(c.latency[m], 50) for m in ("old", "new")}
        p95 = {m: percentile(c.latency[m], 95) for m in ("old", "new")}
        out.append(
            f"| {c.precision} | {c.clips} | {c.concurrency} | {rate['old']:.3f} | {rate['new']:.3f} | "
            f"{min(ratios):.2f}x | {statistics.median(ratios):.2f}x | {audio:.2f} | {p50['old']:.2f} / {p50['new']:.2f} | "
            f"{p95['old']:.2f} / {p95['new']:.2f} | {p95['new'] / p95['old']:.2f}x | "
            f"{c.errors['old']} / {c.errors['new']} |"
        )
    return out


def goals(cells: list[Cell]) -> list[str]:
    """Issue 28's goals, cell by cell: >= 1.1x at 8 clients (3 s, fp32), >= 0.95x everywhere, p95 at 1 client."""
    out = []
    for c in cells:
        ratios = [c.rate("new", i) / c.rate("old", i) for i in range(len(c.wall["old"]))]
        median = statistics.median(ratios)
        floor = 1.1 if (c.precision, c.clips, c.concurrency) == ("fp32", "3s", 8) else 0.95
        checks = [f"throughput {median:.2f}x (median) {'>=' if median >= floor else '<'} {floor}x"]
        if c.concurrency == 1:
            p95 = percentile(c.latency["new"], 95) / percentile(c.latency["old"], 95)
            checks.append(f"p95 latency {p95:.2f}x {'<=' if p95 <= 1.05 else '>'} 1.05x")
        met = median >= floor and (c.concurrency != 1 or p95 <= 1.05)
        out.append(f"- {c.precision} {c.clips} c={c.concurrency}: {'met' if met else 'NOT met'} ({', '.join(checks)})")
    return out


def parity(model: str, precisions=("fp32", "bf16", "int8")) -> list[str]:
    """Engine level: padded batches of 8 mixed-length clips (1-10 s, sorted, batches of 4) against one at a time."""
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.engine.result import result_from_features

    rng = np.random.default_rng(5)
    clips = sorted(((0.1 * rng.standard_normal(int(RATE * s))).astype(np.float32) for s in rng.uniform(1, 10, 8)),
                   key=len)  # fmt: skip
    out = ["| precision | max score difference, batched vs one at a time | max embedding difference |", "|---|---|---|"]
    for precision in precisions:
        engine = EmotionEngine.load(model, device="cpu", precision=precision)
        single = [engine.recognize(c, "utterance", True) for c in clips]
        batched = []
        for group in (clips[:4], clips[4:]):
            batched += [result_from_features(engine.head_logits, f, "utterance", True, 0.0)
                        for f in engine.features_batch(group)]  # fmt: skip
        ds = max(max(abs(a.scores[k] - b.scores[k]) for k in a.scores) for a, b in zip(batched, single, strict=True))
        de = max(float(np.abs(a.embedding - b.embedding).max()) for a, b in zip(batched, single, strict=True))
        out.append(f"| {precision} | {ds:.2e} | {de:.2e} |")
        print(out[-1], flush=True)
        del engine
    return out


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.system()} {platform.machine()}, {cores} cores, load average {load:.1f} at the start"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: a random-weight model of --size built in a temp folder)")
    p.add_argument("--size", default="large", choices=("tiny", "base", "large"),
                   help="the random-weight model's shape when --model is not given (tiny: a smoke run only)")
    p.add_argument("--new-wait-ms", default="auto", help="E2V_BATCH_WAIT_MS of the 'new' server (default: unset, "
                   "the per-device default)")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--concurrency", default="1,4,8,16", help="client counts for the 3 s clips")
    p.add_argument("--mixed-concurrency", default="8", help="client counts for the mixed 1-10 s clips ('' for none)")
    p.add_argument("--int8-concurrency", default=None, help="client counts for int8 (default: --concurrency)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=16, help="requests per cell, round and server (at least 1 a client)")
    p.add_argument("--single-requests", type=int, default=8, help="requests per round at concurrency 1")
    p.add_argument("--parity", default="", help="also the engine-level parity figures for these precisions "
                   "(e.g. fp32,bf16,int8)")
    p.add_argument("--note", default="", help="a line about the machine (shared, loaded, …)")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "serving_throughput.md"), help="markdown file, or -")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the servers (their context exits)

    tmp = Path(tempfile.mkdtemp(prefix="e2v-serving-"))
    model = args.model
    if not model:
        from emotion2vec_webui.model.resolve import quiet_funasr
        from emotion2vec_webui.model.standins import make_test_model

        with quiet_funasr():
            model = str(make_test_model(tmp / args.size, args.size, seed=0))
    desc = machine()
    print(desc, flush=True)
    sets = clip_sets()

    def per_client(c: int) -> int:
        return args.single_requests if c == 1 else max(1, args.requests // c)

    all_cells, logs = [], {}
    for precision in [x for x in args.precisions.split(",") if x]:
        conc = args.int8_concurrency if precision == "int8" and args.int8_concurrency is not None else args.concurrency
        grid = [("3s", [int(c) for c in conc.split(",") if c])]
        if args.mixed_concurrency and precision == "fp32":
            grid.append(("mixed", [int(c) for c in args.mixed_concurrency.split(",") if c]))
        cells, logs[precision] = bench_precision(model, tmp, precision, sets, grid, args.rounds, per_client,
                                                 args.new_wait_ms)  # fmt: skip
        all_cells += cells
    lines = [
        f"## Serving throughput, {date.today().isoformat()}",
        "",
        f"Machine: {desc}. {args.note}".strip(),
        f"Model: {Path(model).name} (random weights); {args.rounds} rounds, old and new servers alternating per "
        "cell; `old` = `E2V_BATCH_WAIT_MS=0` (one request at a time), `new` = "
        + ("the per-device default (CPU fp32: no wait, what is queued, lengths within 10 %)."
           if args.new_wait_ms == "auto" else f"`E2V_BATCH_WAIT_MS={args.new_wait_ms}`."),
        f"Command: `python benchmarks/serving_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        *table(all_cells),
        "",
        *(f"- {precision} {mode}: {line}" for precision, by in logs.items() for mode, line in by.items()),
        "",
        "Issue 28's goals (median ratio over the rounds):",
        "",
        *goals(all_cells),
    ]
    if args.parity:
        lines += ["", "Parity (engine level, 8 clips of 1-10 s in two padded batches of 4):", "",
                  *parity(model, [x for x in args.parity.split(",") if x])]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output != "-":
        with open(args.output, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
