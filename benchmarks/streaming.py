"""Live streams against a real server: how late the interval messages come, with 1, 8 and 32 streams at once.

Run from the repository root (it starts its own server on a free port with the
random-weight tiny model, or uses ``--url`` of one you started)::

    python benchmarks/streaming.py --streams 1 8 32 --seconds 30 --output benchmarks/streaming.md

Each stream plays the same kind of take (espeak-ng sentences with pauses, or
tone bursts without it; 16 kHz 16-bit mono in 100 ms frames) to
``/api/v1/stream`` at real time, the streams' starts spread over a second.
The **delay** of an interval is the time from sending the frame that holds
the end of its audio to receiving its message: network, resampling, the wait
in the inference queue behind the other streams' work, and the model. Each
stream sends at most one interval at a time and skips the intervals that fell
due meanwhile (docs/streaming.md), so the figure to read beside the delays is
the share of intervals **sent** (the rest were skipped, reported as
``warning`` ``behind``): a server that keeps up sends them all. The
utterance delay is from the end of an utterance's audio being sent (its end
plus the 0.3 s pause that ends it) to its ``utterance_end``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = (
    "Good morning. I am really happy to see you today.",
    "Where have you been all this time? I was worried.",
    "The train leaves at seven, so please do not be late.",
)


def take_audio(seconds: float) -> bytes:
    """``seconds`` of 16 kHz 16-bit mono: sentences and pauses (tone bursts without espeak-ng)."""
    import soxr

    from emotion2vec_webui.audio.signals import espeak_available, speech, tone

    pieces = []
    for text in SENTENCES:
        if espeak_available():
            data, rate = speech(text)
            pieces.append(soxr.resample(data, rate, 16000))
        else:
            pieces.append(tone(2.5, 16000)[:, 0])
        pieces.append(np.zeros(16000, np.float32))
    one = np.concatenate(pieces)
    wave = np.tile(one, int(seconds * 16000 // len(one)) + 1)[: int(seconds * 16000)]
    wave = 0.6 * wave / (np.max(np.abs(wave)) + 1e-9)
    return np.round(wave * 32767).astype("<i2").tobytes()


def one_stream(url: str, pcm: bytes, delay_s: float, out: list, token: str | None) -> None:
    """Play ``pcm`` at real time after ``delay_s``; append (interval delays, utterance delays, sent, skipped, error)."""
    from websockets.sync.client import connect

    from emotion2vec_webui.cli.stream import play, ws_url

    time.sleep(delay_s)
    sent: list[tuple[float, float]] = []
    got: list[tuple[float, dict]] = []
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with connect(ws_url(url), additional_headers=headers, open_timeout=60) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16000}))

        def read():
            for raw in ws:
                got.append((time.monotonic(), json.loads(raw)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        frames = [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]
        play(ws, iter(frames), 32000, 1.0, lambda audio, t: sent.append((audio, t)))
        ws.send(json.dumps({"type": "stop"}))
        reader.join(600)

    def sent_at(audio_s: float) -> float:
        return next((t for a, t in sent if a >= audio_s - 1e-6), sent[-1][1])

    intervals = [(t - sent_at(m["end_s"])) for t, m in got if m["type"] == "interval"]
    utterances = [(t - sent_at(m["end_s"] + 0.3)) for t, m in got if m["type"] == "utterance_end"]
    done = next((m for _, m in got if m["type"] in ("done", "error")), {})
    out.append((intervals, utterances, done.get("intervals", 0), done.get("skipped_intervals", 0),
                None if done.get("type") == "done" else done))  # fmt: skip


def measure(url: str, streams: int, seconds: float, token: str | None = None) -> dict:
    """``streams`` real-time streams at once: p50/p95 delays and the share of intervals sent."""
    pcm = take_audio(seconds)
    out: list = []
    threads = [threading.Thread(target=one_stream, args=(url, pcm, i / streams, out, token)) for i in range(streams)]
    load0 = os.getloadavg()[0]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    delays = sorted(d for o in out for d in o[0])
    utter = sorted(d for o in out for d in o[1])
    sent = sum(o[2] for o in out)
    skipped = sum(o[3] for o in out)
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    return {
        "streams": streams, "intervals": len(delays), "sent_share": sent / max(1, sent + skipped),
        "p50": statistics.median(delays) if delays else float("nan"), "p95": pct(delays, 0.95),
        "utt_p50": statistics.median(utter) if utter else float("nan"), "utt_p95": pct(utter, 0.95),
        "errors": [o[4] for o in out if o[4]], "load": (load0 + os.getloadavg()[0]) / 2,
    }  # fmt: skip


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    p.add_argument("--url", help="a running server (default: start one with the tiny model)")
    p.add_argument("--model", help="E2V_MODEL for the server started here (default: the random-weight tiny model)")
    p.add_argument("--token")
    p.add_argument("--output", type=Path, help="append the figures to this Markdown file")
    args = p.parse_args(argv)
    rows, model = [], args.model or "random-weight tiny (FunASR Emotion2vec layout)"
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.url
        if url is None:
            from emotion2vec_webui.model.standins import make_test_model
            from tests.server_util import ServerProcess, server_env

            model_dir = args.model or str(make_test_model(Path(tmp) / "tiny", "tiny", seed=0))
            # every stream comes from 127.0.0.1: no per-client share; room in the queue for every stream's work
            env = server_env(model_dir, Path(tmp), max_per_client=0, max_queue=4 * max(args.streams))
            server = ServerProcess(env).__enter__()
            url = server.url
        try:
            for n in args.streams:
                row = measure(url, n, args.seconds, args.token)
                rows.append(row)
                print(f"{n:>3} streams: interval delay p50 {row['p50']:.3f} s, p95 {row['p95']:.3f} s; "
                      f"{row['sent_share']:.0%} of intervals sent; utterance p50 {row['utt_p50']:.3f} s; "
                      f"load {row['load']:.1f}; errors {row['errors'][:2]}", flush=True)  # fmt: skip
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    if args.output:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"\n## Run {when}\n",
            f"Machine: {machine()}; the load average (other work on the machine) is per row. Model: {model}, CPU.",
            f"Command: `python benchmarks/streaming.py --streams {' '.join(map(str, args.streams))} "
            f"--seconds {args.seconds:g}`\n",
            "| streams | interval delay p50 | p95 | intervals sent (rest skipped) | utterance delay p50 | p95 | "
            "load avg | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(f"| {r['streams']} | {r['p50']:.3f} s | {r['p95']:.3f} s | {r['sent_share']:.0%} "
                         f"({r['intervals']}) | {r['utt_p50']:.3f} s | {r['utt_p95']:.3f} s | {r['load']:.1f} | "
                         f"{len(r['errors'])} |")  # fmt: skip
        with args.output.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
