"""Start-up with FunASR imported for the model's classes only, against ``import funasr`` in full.

Side by side, alternating, in fresh processes on the tiny random-weight model:

- ``recognize`` of a 3 s clip through the CLI (wall time of the whole process);
- ``serve`` until ``/readyz`` answers 200 (the model loaded), then stopped.

``full`` runs ``import funasr`` (FunASR's own ``__init__``: every submodule) before
the command, which is what the app did before ``model/funasr_import.py``; ``lean``
is the app as it is. Prints min and median per mode and their ratio.

    python benchmarks/funasr_import.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

FULL = (
    "from emotion2vec_webui.model.resolve import quiet_funasr\n"
    "with quiet_funasr():\n"
    "    import funasr\n"
)
MAIN = "import sys\nfrom emotion2vec_webui.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recognize_s(mode: str, clip: Path, env: dict) -> float:
    code = (FULL if mode == "full" else "") + MAIN
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "recognize", str(clip), "--json", "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0


def serve_s(mode: str, env: dict) -> float:
    code = (FULL if mode == "full" else "") + MAIN
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from emotion2vec_webui.audio.signals import write_audio
    from emotion2vec_webui.model.standins import make_test_model

    root = Path(tempfile.mkdtemp(prefix="e2v-funasr-import-"))
    model = make_test_model(root / "tiny", "tiny", seed=0)
    clip = root / "tone.wav"
    t = np.arange(3 * 16000) / 16000
    write_audio(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    env = {**os.environ, "E2V_MODEL": str(model), "E2V_OUTPUT_DIR": str(root / "outputs")}

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} at the start, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for mode in ("full", "lean"):
            figures.setdefault(("recognize", mode), []).append(recognize_s(mode, clip, env))
            figures.setdefault(("serve → /readyz", mode), []).append(serve_s(mode, env))
    print("| command | full import: min / median s | lean import: min / median s | median ratio |")
    print("|---|---|---|---|")
    for what in ("recognize", "serve → /readyz"):
        full, lean = figures[(what, "full")], figures[(what, "lean")]
        print(f"| {what} | {min(full):.2f} / {statistics.median(full):.2f} | {min(lean):.2f} / "
              f"{statistics.median(lean):.2f} | {statistics.median(lean) / statistics.median(full):.2f}× |")  # fmt: skip
    print(f"# load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
