"""Hostile speaker names through the REST rename: stored without control or bidi characters, never a CSV formula.

A conversation run (``speakers=channels``, the espeak-ng dialogue sent as FLAC
to ``guarded_server``) is renamed with ``PATCH /api/v1/runs/{id}/speakers`` to
a DDE formula and to a name holding NUL, ESC and RIGHT-TO-LEFT OVERRIDE; the
downloaded ``result.json``, ``turns.csv`` and ``transcript.srt`` are checked.
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from emotion2vec_webui.audio.signals import write_audio

FORMULA = "=cmd|' /C calc'!A0"
HIDDEN = "Ann\x00\x1b[2J\u202eeeL"  # NUL, a terminal escape, RIGHT-TO-LEFT OVERRIDE


@pytest.fixture(scope="module")
def renamed(guarded_server, stereo_dialogue, tmp_path_factory) -> str:
    import soundfile as sf

    wave, rate = sf.read(stereo_dialogue[0], dtype="float32")
    flac = write_audio(tmp_path_factory.mktemp("names") / "call.flac", wave, rate, "flac").read_bytes()
    r = httpx.post(guarded_server.url + "/api/v1/recognize", files={"file": ("call.flac", flac)},
                   data={"speakers": "channels", "extract_embedding": "false"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    r = httpx.patch(f"{guarded_server.url}/api/v1/runs/{run_id}/speakers",
                    json={"names": {"left": FORMULA, "right": HIDDEN}}, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return run_id


def test_names_are_stored_without_control_or_bidi_characters(guarded_server, renamed):
    base = f"{guarded_server.url}/api/v1/runs/{renamed}"
    labels = {s["id"]: s["label"] for s in httpx.get(f"{base}/result.json", timeout=30).json()["speakers"]}
    assert labels == {"left": FORMULA, "right": "Ann[2JeeL"}
    srt = httpx.get(f"{base}/transcript.srt", timeout=30).text
    assert "\x00" not in srt and "\x1b" not in srt and "\u202e" not in srt and "[Ann[2JeeL · " in srt


def test_turns_csv_never_holds_a_formula(guarded_server, renamed):
    text = httpx.get(f"{guarded_server.url}/api/v1/runs/{renamed}/turns.csv", timeout=30).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["speaker"], r["speaker_label"]) for r in rows} == {("left", "'" + FORMULA), ("right", "Ann[2JeeL")}
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c[:1] == "-" and not _number(c))]


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
