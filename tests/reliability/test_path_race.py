"""The ``audio_path`` check-then-open race (issue 15): a parent folder swapped for a symlink mid-request.

A thread swaps ``race/sub`` inside the input folder for a symlink to a folder
outside it (holding a file of the same relative name) and back, as fast as it
can, while requests read ``race/sub/clip.wav``. The file outside has other
content (another duration), so a read that escaped is visible in the answer.
Before the fix (resolve, then open with ``O_NOFOLLOW`` on the last component
only) 40 of 300 requests read the outside file: at that rate, the 100 requests
over HTTP here would all stay inside by chance about once in 10^6 runs (the
3000 direct reads press the race itself harder).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.input_files import read_input_file

INSIDE_S, OUTSIDE_S = 1.0, 0.5  # durations of the clip inside and of the one outside
HTTP_REQUESTS = 100  # each a recognition, while the swapper keeps a core busy


_SWAP_LOOP = """
import os, sys
sub, aside, link, stop = sys.argv[1:5]
swaps = 0
while not os.path.exists(stop):
    os.rename(sub, aside)
    os.rename(link, sub)  # now a symlink out of the input folder
    os.rename(sub, link)
    os.rename(aside, sub)  # the real folder again
    swaps += 1
print(swaps)
"""


class Swapper:
    """Swaps ``<race>/sub`` (a folder) with a symlink to ``outside`` and back, in a loop, until stopped.

    The loop runs in its own process, as an attacker's would: a thread of the
    test process would share the GIL with the reader and hide the race.
    """

    def __init__(self, race: Path, outside: Path) -> None:
        self.sub, self.aside, self.link = race / "sub", race / "sub_real", race / "sub_link"
        self.link.symlink_to(outside, target_is_directory=True)
        self.stop_file = race.parent / f".{race.name}-stop"
        self.swaps = 0

    def __enter__(self) -> Swapper:
        args = [str(p) for p in (self.sub, self.aside, self.link, self.stop_file)]
        self.proc = subprocess.Popen([sys.executable, "-c", _SWAP_LOOP, *args], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not self.aside.exists() and not self.sub.is_symlink():  # wait for the first swap
            assert time.monotonic() < deadline and self.proc.poll() is None, "the swapper did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=20)
        self.stop_file.unlink()
        assert self.proc.returncode == 0, out
        self.swaps = int(out.strip())
        assert self.sub.is_dir() and not self.sub.is_symlink()


def plant(inputs: Path, outside_root: Path) -> tuple[Path, bytes, bytes]:
    """``inputs/race/sub/clip.wav`` (1.0 s) and ``outside_root/sub/clip.wav`` (0.5 s); returns (race, in, out)."""
    race = inputs / "race"
    (race / "sub").mkdir(parents=True)
    (outside_root / "sub").mkdir(parents=True)
    inside = write_audio(race / "sub" / "clip.wav", tone(INSIDE_S, 16000, freq=330.0), 16000, "wav").read_bytes()
    outside = write_audio(outside_root / "sub" / "clip.wav", tone(OUTSIDE_S, 16000), 16000, "wav").read_bytes()
    assert inside != outside
    return race, inside, outside


def test_read_input_file_never_reads_through_a_swapped_parent(tmp_path):
    inputs = tmp_path / "inputs"
    race, inside, outside = plant(inputs, tmp_path / "outside")
    outcomes: Counter = Counter()

    def read_once(_) -> str:
        try:
            data, _name = read_input_file("race/sub/clip.wav", (inputs,), 10 * 1024 * 1024)
        except E2VError as exc:
            return exc.code
        return "inside" if data == inside else "OUTSIDE" if data == outside else "other"

    with Swapper(race, tmp_path / "outside" / "sub") as swapper, ThreadPoolExecutor(4) as pool:
        outcomes.update(pool.map(read_once, range(3000)))
    print(f"\npath race (direct): {dict(outcomes)} over {swapper.swaps} swaps")
    assert outcomes["OUTSIDE"] == 0 and outcomes["other"] == 0, outcomes
    assert outcomes["inside"] > 0, outcomes  # the race was live: reads went through between swaps
    assert set(outcomes) <= {"inside", "forbidden", "not_found"}, outcomes
    assert swapper.swaps > 100


def test_audio_path_race_over_http(reliability_server, tmp_path):
    srv = reliability_server
    race, _inside, _outside = plant(srv.inputs, tmp_path / "outside")
    outcomes: Counter = Counter()

    def request(client: httpx.Client) -> str:
        r = client.post("/api/v1/recognize", json={"audio_path": "race/sub/clip.wav", "extract_embedding": False})
        if r.status_code != 200:
            code = r.json()["error"]["code"]
            return code if (r.status_code, code) in ((403, "forbidden"), (404, "not_found")) else f"{r.status_code}"
        duration = r.json()["audio"]["duration_s"]
        return "inside" if abs(duration - INSIDE_S) < 0.01 else "OUTSIDE" if abs(duration - OUTSIDE_S) < 0.01 else "?"

    def worker(n: int) -> list[str]:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            return [request(client) for _ in range(n)]

    try:
        with Swapper(race, tmp_path / "outside" / "sub") as swapper, ThreadPoolExecutor(4) as pool:
            for results in pool.map(worker, [HTTP_REQUESTS // 4] * 4):
                outcomes.update(results)
    finally:
        (race / "sub_link").unlink(missing_ok=True)
    print(f"\npath race (HTTP): {dict(outcomes)} in {HTTP_REQUESTS} requests over {swapper.swaps} swaps")
    assert sum(outcomes.values()) == HTTP_REQUESTS
    assert outcomes["OUTSIDE"] == 0, outcomes
    assert outcomes["inside"] > 0, outcomes
    assert set(outcomes) <= {"inside", "forbidden", "not_found"}, outcomes
