"""Downloads during renames: every artifact download is one whole version of the file, never a cut one.

``PATCH /api/v1/runs/{id}/speakers`` replaces ``transcript.srt``,
``transcript.vtt``, ``turns.csv`` and ``result.json`` atomically (a temp file
renamed over the old one). A file response that takes the size from one
file and then opens the path again reads the other: the issue measured 42 cut
downloads in 864 ("Too much data for declared Content-Length"). Served from
one descriptor, the size and the bytes belong to the same file.

The run is a real conversation run (``speakers=channels``) of the espeak-ng
dialogue, sent as FLAC to ``guarded_server`` (1 MB uploads, no duration cap
under the dialogue's 17 s).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from emotion2vec_webui.audio.signals import write_audio

DOWNLOADS = 1000
ARTIFACTS = ("transcript.srt", "turns.csv", "result.json")
# Two versions of the names, of very different lengths, so that the files' sizes differ.
VERSIONS = ({"left": "A", "right": "B"}, {"left": "Agent with a long name " + "x" * 16, "right": "客户" * 12})


@pytest.fixture(scope="module")
def conversation_run(guarded_server, stereo_dialogue, tmp_path_factory) -> str:
    import soundfile as sf

    wave, rate = sf.read(stereo_dialogue[0], dtype="float32")
    flac = write_audio(tmp_path_factory.mktemp("dialogue") / "call.flac", wave, rate, "flac").read_bytes()
    r = httpx.post(guarded_server.url + "/api/v1/recognize", files={"file": ("call.flac", flac)},
                   data={"speakers": "channels", "extract_embedding": "false"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    assert len(r.json()["turns"]) >= 2, r.json()["turns"]
    run_id = r.json()["run_id"]
    r = httpx.patch(f"{guarded_server.url}/api/v1/runs/{run_id}/speakers", json={"names": VERSIONS[0]}, timeout=30)
    assert r.status_code == 200, r.text
    return run_id


def _version_of(artifact: str, body: bytes, turns: int) -> int:
    """Which of :data:`VERSIONS` a whole ``body`` is (an AssertionError when it is neither, or cut)."""
    text = body.decode("utf-8")
    if artifact == "result.json":
        labels = {s["id"]: s["label"] for s in json.loads(text)["speakers"]}
        assert len(json.loads(text)["turns"]) == turns
        return VERSIONS.index(labels)
    if artifact == "turns.csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == turns
        seen = {(row["speaker"], row["speaker_label"]) for row in rows}
        (version,) = [i for i, v in enumerate(VERSIONS) if seen <= v.items()]
        return version
    import srt

    cues = list(srt.parse(text))
    assert len(cues) == turns
    names = {cue.content.split(" · ")[0].lstrip("[") for cue in cues}
    (version,) = [i for i, v in enumerate(VERSIONS) if names <= set(v.values())]
    return version


def test_downloads_during_a_rename_loop_are_never_cut(guarded_server, conversation_run):
    base = f"{guarded_server.url}/api/v1/runs/{conversation_run}"
    turns = len(httpx.get(base, timeout=30).json()["turns"])
    stop = threading.Event()
    renames = []

    def rename_loop() -> None:
        with httpx.Client(timeout=30) as c:
            for names in itertools.cycle(VERSIONS):
                if stop.is_set():
                    return
                r = c.patch(base + "/speakers", json={"names": names})
                renames.append(r.status_code)

    cut, versions = [], {0: 0, 1: 0}
    local = threading.local()

    def download(i: int) -> None:
        artifact = ARTIFACTS[i % len(ARTIFACTS)]
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        try:
            r = local.client.get(f"{base}/{artifact}")
            assert r.status_code == 200, r.text
            assert int(r.headers["content-length"]) == len(r.content)
            versions[_version_of(artifact, r.content, turns)] += 1
        except (httpx.HTTPError, AssertionError, ValueError) as exc:
            cut.append(f"{artifact}: {type(exc).__name__}: {str(exc)[:200]}")
            local.client = httpx.Client(timeout=30)  # the connection may be broken

    renamer = threading.Thread(target=rename_loop)
    began = time.monotonic()
    renamer.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(download, range(DOWNLOADS)))
    finally:
        stop.set()
        renamer.join(60)
    took = time.monotonic() - began
    print(f"\nrename race: {len(cut)} cut of {DOWNLOADS} downloads during {len(renames)} renames in {took:.1f} s; "
          f"versions served {versions}")  # fmt: skip
    assert set(renames) == {200} and len(renames) >= 2, renames[:20]
    assert not cut, (len(cut), cut[:10])
    assert min(versions.values()) > 0, versions  # both versions were served: the race was on


def test_range_requests_are_served_from_the_same_file(guarded_server, conversation_run):
    url = f"{guarded_server.url}/api/v1/runs/{conversation_run}/processed_audio.wav"
    whole = httpx.get(url, timeout=30)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    assert int(whole.headers["content-length"]) == size and whole.headers.get("etag")
    for header, start, end in (("bytes=0-99", 0, 99), (f"bytes={size - 10}-", size - 10, size - 1),
                               ("bytes=-20", size - 20, size - 1), (f"bytes=100-{size + 50}", 100, size - 1)):  # fmt: skip
        r = httpx.get(url, headers={"Range": header}, timeout=30)
        assert r.status_code == 206, (header, r.status_code)
        assert r.content == whole.content[start : end + 1], header
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}", header
        assert int(r.headers["content-length"]) == end - start + 1
    r = httpx.get(url, headers={"Range": f"bytes={size}-"}, timeout=30)
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'}, timeout=30)
    assert r.status_code == 200 and r.content == whole.content  # a changed file: the whole of it
    r = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]}, timeout=30)
    assert r.status_code == 206 and r.content == whole.content[:10]
