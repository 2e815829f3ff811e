"""Issue 19's costs, side by side: the channel choice in the decoder, and fetching an audio_url.

* Decoding a 60 s 48 kHz stereo PCM-16 wav (in process, interleaved runs):
  ``channels=mix`` with the mix warnings' statistics (what ships), the plain
  mix without them (the decoder before issue 19, patched in here), and
  ``channels=left`` (one channel, no mean). Prints medians and the ratios.
* ``runs/url_fetch.fetch_url``: an allowed 127.0.0.1 download of the same
  file, and refusals (metadata address, an odd loopback spelling, loopback
  without the allow-list), which must cost no network time.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/input_paths.py [--rounds 5]``
(the decode workers run with one BLAS thread). Results: ``input_paths.md``.
"""

from __future__ import annotations

import argparse
import http.server
import io
import statistics
import threading
import time

import numpy as np
import soundfile as sf

from emotion2vec_webui.audio import readers
from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.format import DecodeOptions
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.url_fetch import FetchPolicy, fetch_url


def plain_add(self, block: np.ndarray) -> None:
    """MonoSink.add before issue 19: the mean of the channels, nothing else."""
    if block.shape[0] == 0:
        return
    self.frames += block.shape[0]
    if self.frames > self.cap:
        raise readers._too_long(self.name, self.limits)
    if not np.isfinite(block).all():
        raise ValueError("non-finite")
    self._push(block.mean(axis=1, dtype=np.float64).astype(np.float32), last=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((48000 * 60, 2))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 48000, format="WAV", subtype="PCM_16")
    data = buf.getvalue()

    shipped = readers.MonoSink.add
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name in ("mix (shipped, with warnings' statistics)", "mix (plain, before issue 19)", "left"):
            readers.MonoSink.add = plain_add if "plain" in name else shipped
            t = time.perf_counter()
            decode_audio(data, options=DecodeOptions("left" if name == "left" else "mix"))
            times.setdefault(name, []).append(time.perf_counter() - t)
    readers.MonoSink.add = shipped
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"decode 60 s 48 kHz stereo wav, channels={k}: median {v * 1000:.0f} ms of {args.rounds}")
    names = list(med)
    print(f"ratio shipped mix / plain mix: {med[names[0]] / med[names[1]]:.2f}; left / plain mix: "
          f"{med[names[2]] / med[names[1]]:.2f}")  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/a.wav"
    allowed = FetchPolicy(allow=("127.0.0.1",), max_bytes=64 << 20)
    ts = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        fetched = fetch_url(url, allowed)
        ts.append(time.perf_counter() - t)
    print(f"fetch {len(fetched.data) / 1e6:.1f} MB from 127.0.0.1 (allowed): median {statistics.median(ts) * 1000:.0f} ms")
    for refused in ("http://169.254.169.254/", "http://0x7f.1/", url):
        ts = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            try:
                fetch_url(refused, FetchPolicy())
            except E2VError:
                pass
            ts.append(time.perf_counter() - t)
        print(f"refuse {refused}: median {statistics.median(ts) * 1000:.1f} ms")
    server.shutdown()


if __name__ == "__main__":
    main()
