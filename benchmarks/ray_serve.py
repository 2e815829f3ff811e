"""``serve --ray`` against the single-process server: clips/s with 1 and 2 replicas, and the Ray hop's latency.

For each model (default: the random-weight ``tiny`` and ``large`` stand-ins,
built in a temp folder) it starts, side by side on one Ray cluster: the
single-process server (``serve``), ``serve --ray --replicas 1`` and ``serve
--ray --replicas 2`` (two Serve applications, ``--app-name``). They get the
same cells in turn, the order rotating, over ``--rounds``: closed-loop
clients (each sends its next request as soon as it is answered) posting 3 s
WAV clips to ``/api/v1/recognize``, at every ``--concurrency``. The machine's
CPUs are shared out the same way in every setting: the single process uses
all of them, one replica reserves all of them (``--replica-cpus``, also its
torch threads), two replicas half each. The Ray hop alone is measured
through a Serve handle: a typed request's round trip minus the time the
replica spent in the model, one call at a time (p50/p95).

On one machine (the default) a local Ray instance is started here with the
machine's cores. For a multi-node run start the cluster first (``ray start
--head`` on one node, ``ray start --address HEAD:6379`` on the others, the
package and the model folder at the same path on every node) and pass
``--address HEAD:6379 --replica-cpus N``; replicas then spread over the nodes
(docs/scaling.md).

    python benchmarks/ray_serve.py --output benchmarks/ray_serve.md
    python benchmarks/ray_serve.py --models tiny --concurrency 1,4 --output -
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_throughput import machine, percentile, run_cell, wav_bytes  # noqa: E402
from tests.server_util import ServerProcess, server_env  # noqa: E402


def start_cluster(address: str | None, cpus: int) -> str:
    """Join ``address``, or start a local Ray instance with ``cpus`` CPUs; returns the cluster's address."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=256 << 20)
    return ray.get_runtime_context().gcs_address


def measure_round(servers: dict, clips, concurrency: list[int], requests: int, single: int, rnd: int, acc: dict):
    """One round: every cell on every server, the servers' order rotating per cell (load hits all alike)."""
    labels = list(servers)
    for k, c in enumerate(concurrency):
        per_client = single if c == 1 else max(1, requests // c)
        shift = (rnd + k) % len(labels)
        for label in labels[shift:] + labels[:shift]:
            wall, latencies, _audio_s, errors = run_cell(servers[label].url, clips, c, per_client)
            cell = acc.setdefault(label, {}).setdefault(c, {"rates": [], "latencies": [], "errors": 0})
            cell["rates"].append(len(latencies) / wall)
            cell["latencies"] += latencies
            cell["errors"] += errors
            print(
                f"  round {rnd + 1}, {label}, c={c}: {len(latencies) / wall:.2f} clips/s, {errors} errors", flush=True
            )


def bench_model(name: str, model: str, root: Path, address: str, cpus: float, args) -> dict:
    """All three servers started at once (idle ones cost little), then ``--rounds`` rounds of every cell."""
    import contextlib

    clips = [(wav_bytes(3.0, i), 3.0) for i in range(8)]
    env = {"max_per_client": 0, "max_queue": 256}
    settings = {
        "single process": [],
        "ray, 1 replica": ["--replicas", "1", "--replica-cpus", f"{cpus:g}", "--app-name", f"e2v-bench-{name}-1"],
        "ray, 2 replicas": ["--replicas", "2", "--replica-cpus", f"{cpus / 2:g}", "--app-name", f"e2v-bench-{name}-2"],
    }
    with contextlib.ExitStack() as stack:
        servers = {}
        for label, extra in settings.items():
            folder = root / f"{name}-{label.replace(' ', '').replace(',', '-')}"
            cli = ["--ray", "--address", address, *extra] if extra else []
            servers[label] = stack.enter_context(
                ServerProcess(
                    server_env(model, folder, **env), wait_ready=False, log_path=folder.with_suffix(".log"), args=cli
                )  # fmt: skip
            )
        print(f"{name}: starting the servers …", flush=True)
        for srv in servers.values():
            srv.wait("/readyz", 1200)
        for srv in servers.values():
            run_cell(srv.url, clips, 1, 2)  # warm up: the first requests start decode workers and allocators
        acc: dict = {}
        for rnd in range(args.rounds):
            measure_round(servers, clips, args.concurrency, args.requests, args.single_requests, rnd, acc)
        hop = hop_latency(f"e2v-bench-{name}-1", args.hop_calls)
    return hop, {
        label: {
            c: {
                "clips_s": statistics.median(cell["rates"]),
                "p50": percentile(cell["latencies"], 50),
                "p95": percentile(cell["latencies"], 95),
                "errors": cell["errors"],
            }
            for c, cell in cells.items()
        }
        for label, cells in acc.items()
    }


def hop_latency(app_name: str, calls: int) -> tuple[float, float]:
    """The Ray hop alone: a typed request's round trip through a Serve handle minus the time its replica spent in
    the model (``EmotionResult.inference_s``), one call at a time; (p50, p95) in seconds."""
    import numpy as np
    from ray import serve

    from emotion2vec_webui.runs.inference.scheduler import InferenceRequest

    handle = serve.get_app_handle(app_name)
    waveform = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)
    extra = []
    for i in range(calls + 2):
        t0 = time.perf_counter()
        result = handle.infer.remote(InferenceRequest(waveform, embedding=False)).result()
        if i >= 2:  # the first calls warm the route up
            extra.append(time.perf_counter() - t0 - result.inference_s)
    return percentile(extra, 50), percentile(extra, 95)


def table(name: str, results: dict, concurrency: list[int], hop: tuple[float, float]) -> list[str]:
    base = results["single process"]
    lines = [
        f"### {name}",
        "",
        "| setting | clients | clips/s | vs single process | latency p50 | latency p95 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, cells in results.items():
        for c in concurrency:
            cell = cells[c]
            ratio = cell["clips_s"] / base[c]["clips_s"] if base[c]["clips_s"] else float("nan")
            lines.append(f"| {label} | {c} | {cell['clips_s']:.2f} | {ratio:.2f}x | {cell['p50'] * 1000:.0f} ms | "
                         f"{cell['p95'] * 1000:.0f} ms | {cell['errors']} |")  # fmt: skip
    lines += [
        "",
        f"The Ray hop alone (a handle's round trip minus the replica's time in the model, one call at a time): "
        f"p50 {hop[0] * 1000:.1f} ms, p95 {hop[1] * 1000:.1f} ms.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,large", help="stand-in sizes (tiny, base, large) or model directories")
    p.add_argument("--concurrency", default="1,4,8", help="client counts")
    p.add_argument("--requests", type=int, default=24, help="requests per cell (at least 1 a client)")
    p.add_argument("--single-requests", type=int, default=12, help="requests at one client")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every cell on every server (median clips/s)")
    p.add_argument("--address", help="an existing Ray cluster (multi-node); default: a local instance here")
    p.add_argument("--replica-cpus", type=float, default=None,
                   help="CPUs for one replica (two replicas get half each; default: this machine's cores)")  # fmt: skip
    p.add_argument("--hop-calls", type=int, default=30, help="sequential calls that measure the Ray hop alone")
    p.add_argument("--note", default="", help="a line about the machine (shared, loaded, …)")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "ray_serve.md"), help="markdown file, or -")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    if 1 not in args.concurrency:
        args.concurrency.insert(0, 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the servers (their context exits)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = args.replica_cpus or float(cores)
    desc = machine()
    print(desc, flush=True)
    address = start_cluster(args.address, 2 * cores)  # logical CPUs: one replica's and two replicas' reservations
    tmp = Path(tempfile.mkdtemp(prefix="e2v-ray-bench-"))
    lines = [
        f"## Ray Serve against one process, {date.today().isoformat()}",
        "",
        f"Machine: {desc}. {args.note}".strip(),
        f"Ray: {'the cluster at ' + args.address if args.address else f'a local instance on these {cores} cores'}; "
        f"one replica reserves {cpus:g} CPUs (and runs {int(cpus)} torch threads), two replicas {cpus / 2:g} each; "
        "the single process runs as many threads as there are cores. All three servers run at once (idle ones cost "
        f"little); 3 s clips, closed-loop clients; {args.rounds} rounds, the servers' order rotating per cell; "
        "clips/s is the median over rounds, latencies pooled.",
        f"Command: `python benchmarks/ray_serve.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
    ]
    for spec in [m for m in args.models.split(",") if m]:
        if spec in ("tiny", "base", "large"):
            from emotion2vec_webui.model.resolve import quiet_funasr
            from emotion2vec_webui.model.standins import make_test_model

            with quiet_funasr():
                model = str(make_test_model(tmp / spec, spec, seed=0))
            name = f"{spec} stand-in (random weights)"
        else:
            model, name = spec, Path(spec).name
        hop, results = bench_model(spec, model, tmp, address, cpus, args)
        lines += table(name, results, args.concurrency, hop)
    text = "\n".join(lines) + "\n"
    if args.output == "-":
        print(text)
    else:
        out = Path(args.output)
        previous = out.read_text("utf-8") if out.exists() else ""
        out.write_text(text + ("\n" + previous if previous else ""), "utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
