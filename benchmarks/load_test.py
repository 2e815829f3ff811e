"""Load and overload against a real server: REST and gradio_client clients mixed, for a bounded time.

Run from the repository root (it starts its own servers on free ports with a
random-weight tiny model, or uses ``--url`` / ``--outputs`` of one you started)::

    python benchmarks/load_test.py --clients 12 --gradio-clients 4 --duration 60 \
        --output benchmarks/load_results.md

It prints and records: clients × duration, requests, 200s, designed 503s,
errors (anything else), p50/p95 latency, run folders verified complete, the
503 response time under overload (``E2V_MAX_QUEUE=2``) and recovery, and
100 parallel requests → 100 distinct complete run folders. The functions are
also used by ``tests/reliability/test_load.py`` with short durations.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Call:
    kind: str  # "rest" or "gradio"
    status: int  # HTTP status (gradio: 200 or the mapped error status)
    code: str | None  # error code, None when 200
    latency_s: float  # wall time of the call
    run_id: str | None  # the run folder written (200 only)
    embedding: bool  # whether embedding.npy was asked for


@dataclass(frozen=True)
class LoadReport:
    rest_clients: int
    gradio_clients: int
    duration_s: float  # wall time of the run
    calls: tuple[Call, ...]
    incomplete_runs: tuple[str, ...] = ()  # run ids whose folder is missing files
    errors: tuple[str, ...] = field(default=())  # descriptions of undesigned failures

    @property
    def ok(self) -> list[Call]:
        return [c for c in self.calls if c.status == 200]

    @property
    def overloaded(self) -> list[Call]:
        return [c for c in self.calls if c.code == "overloaded"]

    def latency(self, q: float) -> float:
        return percentile([c.latency_s for c in self.ok], q)

    def summary(self) -> dict:
        return {
            "clients": f"{self.rest_clients} REST + {self.gradio_clients} gradio_client",
            "duration_s": round(self.duration_s, 1),
            "requests": len(self.calls),
            "ok": len(self.ok),
            "overloaded_503": len(self.overloaded),
            "errors": len(self.errors),
            "throughput_rps": round(len(self.ok) / self.duration_s, 2) if self.duration_s else 0.0,
            "p50_s": round(self.latency(50), 3),
            "p95_s": round(self.latency(95), 3),
            "max_s": round(max((c.latency_s for c in self.ok), default=0.0), 3),
            "runs_verified_complete": len(self.ok) - len(self.incomplete_runs),
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def make_clips(folder: Path) -> list[Path]:
    """Short generated clips of several formats and lengths (0.5-3 s)."""
    from emotion2vec_webui.audio.signals import tone, write_audio

    folder.mkdir(parents=True, exist_ok=True)
    specs = [("wav", 16000, 1.0), ("flac", 22050, 2.0), ("mp3", 44100, 1.5), ("wav", 48000, 3.0), ("ogg", 16000, 0.5)]
    return [
        write_audio(folder / f"clip{i}.{fmt}", tone(sec, rate, freq=150 + 60 * i, channels=1 + i % 2), rate, fmt)
        for i, (fmt, rate, sec) in enumerate(specs)
    ]


def rest_call(client: httpx.Client, clip: Path, granularity: str, embedding: bool) -> Call:
    started = time.perf_counter()
    r = client.post(
        "/api/v1/recognize",
        files={"file": (clip.name, clip.read_bytes())},
        data={"granularity": granularity, "extract_embedding": str(embedding).lower()},
    )
    latency = time.perf_counter() - started
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    code = (body.get("error") or {}).get("code") if r.status_code != 200 else None
    return Call("rest", r.status_code, code, latency, body.get("run_id") if r.status_code == 200 else None, embedding)


def gradio_call(client, clip: Path, granularity: str, embedding: bool) -> Call:
    from gradio_client import handle_file

    started = time.perf_counter()
    try:
        result = client.predict(handle_file(str(clip)), granularity, embedding, api_name="/recognize")
    except Exception as exc:  # gradio_client raises AppError / QueueError with the message
        text = str(exc)
        code = "overloaded" if ("overloaded" in text or "queue is full" in text.lower()) else "gradio_error"
        return Call(
            "gradio", 503 if code == "overloaded" else 500, code, time.perf_counter() - started, None, embedding
        )
    return Call("gradio", 200, None, time.perf_counter() - started, result.get("run_id"), embedding)


def run_load(
    url: str,
    outputs: Path,
    clips: list[Path],
    rest_clients: int,
    gradio_clients: int,
    duration_s: float,
    token: str | None = None,
) -> LoadReport:
    """Closed-loop clients hammering the server for ``duration_s``; then every run folder is checked."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    stop = time.monotonic() + duration_s
    calls: list[Call] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(index: int, kind: str) -> None:
        options = itertools.cycle(
            [(c, g, e) for c in clips for g, e in (("utterance", True), ("frame", False), ("utterance", False))]
        )
        for _ in range(index * 3):
            next(options)  # clients start at different clips
        try:
            if kind == "rest":
                client = httpx.Client(base_url=url, headers=headers, timeout=120)
                call = rest_call
            else:
                from gradio_client import Client

                client = Client(
                    url, verbose=False, headers=headers or None, analytics_enabled=False, download_files=False
                )
                call = gradio_call
        except Exception as exc:
            with lock:
                errors.append(f"{kind} client {index} could not connect: {exc}")
            return
        while time.monotonic() < stop:
            clip, granularity, embedding = next(options)
            try:
                result = call(client, clip, granularity, embedding)
            except Exception as exc:
                with lock:
                    errors.append(f"{kind} client {index}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                calls.append(result)
                if result.status != 200 and result.code != "overloaded":
                    errors.append(f"{kind} client {index}: {result.status} {result.code}")
            if result.code == "overloaded":
                time.sleep(0.05)
        client.close()

    started = time.monotonic()
    kinds = ["rest"] * rest_clients + ["gradio"] * gradio_clients
    with ThreadPoolExecutor(len(kinds)) as pool:
        list(pool.map(lambda ik: worker(*ik), enumerate(kinds)))
    elapsed = time.monotonic() - started
    incomplete = tuple(c.run_id or "<no run id>" for c in calls if c.status == 200 and not run_complete(outputs, c))
    return LoadReport(rest_clients, gradio_clients, elapsed, tuple(calls), incomplete, tuple(errors))


def run_complete(outputs: Path, call: Call) -> bool:
    """The run folder holds every file it should, and result.json parses."""
    if not call.run_id:
        return False
    folder = outputs / call.run_id
    need = {"result.json", "processed_audio.wav", "run.log"} | ({"embedding.npy"} if call.embedding else set())
    try:
        names = {p.name for p in folder.iterdir()}
        json.loads((folder / "result.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return need <= names


def overload_burst(
    url: str, clip: Path, burst: int, token: str | None = None, probes: int = 20, fillers: int = 4
) -> dict:
    """Against a small queue: single requests arriving at a full server, then ``burst`` at once; recovery.

    Probes: while ``fillers`` background clients keep the queue full, ``probes`` requests are
    sent one after another and timed (what one more client sees at a full server).
    Burst: ``burst`` requests released together by a barrier (the last of them
    also waits for the event loop to get through the others).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = clip.read_bytes()

    def post(client: httpx.Client) -> tuple[int, float, str | None]:
        started = time.perf_counter()
        r = client.post("/api/v1/recognize", files={"file": (clip.name, data)}, data={"extract_embedding": "false"})
        return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

    stop = threading.Event()

    def filler() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            while not stop.is_set():
                if post(client)[0] == 503:
                    time.sleep(0.01)

    threads = [threading.Thread(target=filler, daemon=True) for _ in range(fillers)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        probe_results = [post(client) for _ in range(probes)]
    stop.set()
    for t in threads:
        t.join()

    barrier = threading.Barrier(burst)

    def one(_: int) -> tuple[int, float, str | None]:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            barrier.wait()
            return post(client)

    with ThreadPoolExecutor(burst) as pool:
        results = list(pool.map(one, range(burst)))
    probe_rejected = [lat for status, lat, _ in probe_results if status == 503]
    rejected = [lat for status, lat, _ in results if status == 503]
    retry_after = {ra for status, _, ra in results + probe_results if status == 503}
    others = [status for status, _, _ in results + probe_results if status not in (200, 503)]
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        recovered = client.post("/api/v1/recognize", files={"file": (clip.name, data)}).status_code == 200
        ready = client.get("/readyz").status_code == 200
    return {
        "probes": probes,
        "probe_rejected_503": len(probe_rejected),
        "probe_p50_ms": _ms(percentile(probe_rejected, 50)) if probe_rejected else None,
        "probe_max_ms": _ms(max(probe_rejected)) if probe_rejected else None,
        "burst": burst,
        "ok": sum(1 for s, _, _ in results if s == 200),
        "rejected_503": len(rejected),
        "other_statuses": others,
        "retry_after": sorted(r for r in retry_after if r),
        "reject_p50_ms": _ms(percentile(rejected, 50)) if rejected else None,
        "reject_max_ms": _ms(max(rejected)) if rejected else None,
        "recovered": recovered and ready,
        "recovery_request_s": round(time.perf_counter() - t0, 3),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def parallel_burst(url: str, outputs: Path, clip: Path, n: int = 100, token: str | None = None) -> dict:
    """``n`` requests at once: all 200, ``n`` distinct complete run folders."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    barrier = threading.Barrier(n)

    def one(_: int) -> Call:
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            barrier.wait()
            return rest_call(client, clip, "utterance", False)

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        calls = list(pool.map(one, range(n)))
    ids = {c.run_id for c in calls if c.status == 200}
    return {
        "requests": n,
        "ok": sum(1 for c in calls if c.status == 200),
        "statuses": sorted({c.status for c in calls}),
        "distinct_run_ids": len(ids),
        "complete_folders": sum(1 for c in calls if c.status == 200 and run_complete(outputs, c)),
        "wall_s": round(time.perf_counter() - started, 2),
        "leftover_temp_dirs": len(list(outputs.glob(".tmp-*"))),
    }


def machine() -> str:
    import psutil

    from emotion2vec_webui.bench.benchmark import cpu_model

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}, "
        f"load average at start {load:.1f}"
    )


def _server(model: str, outputs: Path, **env):
    sys.path.insert(0, str(ROOT))
    from tests.server_util import ServerProcess

    # Every client here is 127.0.0.1: no per-client share (E2V_MAX_PER_CLIENT), or it would answer 429 first.
    base = {"E2V_MODEL": model, "E2V_DEVICE": "cpu", "E2V_OUTPUT_DIR": str(outputs), "E2V_API_TOKEN": "",
            "E2V_MAX_PER_CLIENT": "0"}  # fmt: skip
    base.update({k: str(v) for k, v in env.items()})
    return ServerProcess(base)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=12, help="REST clients")
    p.add_argument("--gradio-clients", type=int, default=4, help="gradio_client clients")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--burst", type=int, default=40, help="simultaneous requests against E2V_MAX_QUEUE=2")
    p.add_argument("--model", help="model dir (default: a fresh random-weight tiny model)")
    p.add_argument("--output", type=Path, help="append a Markdown section with the figures here")
    args = p.parse_args(argv)

    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins import make_test_model

    work = Path(tempfile.mkdtemp(prefix="e2v-load-"))
    if args.model:
        model = args.model
    else:
        with quiet_funasr():
            model = str(make_test_model(work / "tiny", "tiny", seed=0))
    clips = make_clips(work / "clips")
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine_desc = machine()
    print(f"machine: {machine_desc}", flush=True)

    with _server(model, work / "out", E2V_MAX_QUEUE=128) as srv:  # room for the 100-request burst
        report = run_load(srv.url, work / "out", clips, args.clients, args.gradio_clients, args.duration)
        print("load:", json.dumps(report.summary()), flush=True)
        for line in report.errors[:10]:
            print("  error:", line)
        burst100 = parallel_burst(srv.url, work / "out", clips[0], 100)
        print("100 parallel:", json.dumps(burst100), flush=True)
    long_clip = make_clips_long(work / "clips")
    with _server(model, work / "out2", E2V_MAX_QUEUE=2) as srv:
        overload = overload_burst(srv.url, long_clip, args.burst)
        print("overload:", json.dumps(overload), flush=True)

    if args.output:
        load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        machine_desc += f", {load_end:.1f} at the end"
        write_markdown(args.output, started_at, machine_desc, args, report, burst100, overload)
        print(f"wrote {args.output}")
    ok = not report.errors and not report.incomplete_runs and overload["recovered"]
    ok = ok and burst100["ok"] == burst100["distinct_run_ids"] == burst100["complete_folders"] == 100
    return 0 if ok else 1


def make_clips_long(folder: Path) -> Path:
    """A 20 s clip: each inference takes long enough for a burst to fill a queue of 2."""
    from emotion2vec_webui.audio.signals import tone, write_audio

    return write_audio(folder / "long.wav", tone(20.0, 16000), 16000, "wav")


def write_markdown(path: Path, when: str, machine_desc: str, args, report: LoadReport, burst100, overload) -> None:
    s = report.summary()
    kinds = {k: sum(1 for c in report.calls if c.kind == k) for k in ("rest", "gradio")}
    lines = [
        f"## Load run {when}",
        "",
        f"Machine: {machine_desc}. Model: random-weight tiny (FunASR Emotion2vec), CPU.",
        f"Command: `python benchmarks/load_test.py --clients {args.clients} --gradio-clients "
        f"{args.gradio_clients} --duration {args.duration:g} --burst {args.burst}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| clients × duration | {s['clients']} × {s['duration_s']} s |",
        f"| requests (REST / gradio_client) | {s['requests']} ({kinds['rest']} / {kinds['gradio']}) |",
        f"| 200 OK | {s['ok']} |",
        f"| designed 503 overloaded | {s['overloaded_503']} |",
        f"| errors (anything else) | {s['errors']} |",
        f"| throughput | {s['throughput_rps']} requests/s |",
        f"| latency p50 / p95 / max | {s['p50_s']} / {s['p95_s']} / {s['max_s']} s |",
        f"| run folders verified complete | {s['runs_verified_complete']} of {s['ok']} |",
        f"| 100 parallel requests | {burst100['ok']} × 200, {burst100['distinct_run_ids']} distinct run ids, "
        f"{burst100['complete_folders']} complete folders, {burst100['leftover_temp_dirs']} temp dirs left, "
        f"{burst100['wall_s']} s |",
        f"| overload: one request at a full queue (E2V_MAX_QUEUE=2), {overload['probes']} probes | "
        f"{overload['probe_rejected_503']} × 503, p50 {overload['probe_p50_ms']} ms, "
        f"max {overload['probe_max_ms']} ms |",
        f"| overload: burst of {overload['burst']} at once | {overload['ok']} × 200, "
        f"{overload['rejected_503']} × 503 (Retry-After {', '.join(overload['retry_after']) or '-'}), "
        f"other statuses {overload['other_statuses'] or 'none'} |",
        f"| burst 503 response time p50 / max | {overload['reject_p50_ms']} / {overload['reject_max_ms']} ms |",
        f"| recovered after the burst | {'yes' if overload['recovered'] else 'NO'} "
        f"(next request {overload['recovery_request_s']} s) |",
        "",
    ]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
