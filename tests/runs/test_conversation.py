"""Conversations through the one recognise flow: speakers per channel or by diarization, turns, SRT/VTT/CSV.

Random weights: no test asserts a word, an emotion or who a diarized speaker is; they check structure,
timing against where each espeak-ng voice speaks, and that channel speakers follow the channels.
"""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest

from emotion2vec_webui.labels import EMOJI, EMOTIONS
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.transcripts import cue_text
from tests.spec_check import check_result

TOLERANCE_S = 0.3


@pytest.fixture
def conv_settings(settings, conversation_models):
    return dataclasses.replace(
        settings, asr_model=str(conversation_models["sensevoice"]), speaker_model=str(conversation_models["campplus"])
    )


def _run(settings, engine, source, **options):
    return Recognition(settings, RecognizeOptions(**options)).run(source, lambda fn: fn(engine))


def _check_turns(turns: list[dict], transcribed: bool) -> None:
    assert turns, "no turns"
    assert [t["index"] for t in turns] == list(range(len(turns)))
    assert [t["start_s"] for t in turns] == sorted(t["start_s"] for t in turns)
    for t in turns:
        assert 0 <= t["start_s"] < t["end_s"]
        assert list(t["scores"]) == list(EMOTIONS) and abs(sum(t["scores"].values()) - 1) < 1e-4
        assert t["emotion"] == max(t["scores"], key=t["scores"].get)
        assert ("text" in t) == transcribed
        if transcribed:
            assert isinstance(t["text"], str) and t["asr_emotion"] in (None, *EMOTIONS)
    by_speaker: dict[str, list[dict]] = {}
    for t in turns:
        by_speaker.setdefault(t["speaker"], []).append(t)
    for mine in by_speaker.values():  # a speaker's turns never overlap
        for a, b in zip(mine, mine[1:], strict=False):
            assert a["end_s"] <= b["start_s"] + 1e-6


def test_channels_speakers_follow_the_channels(conv_settings, engine, stereo_dialogue):
    import srt
    import webvtt

    path, spans = stereo_dialogue
    out = _run(conv_settings, engine, path, speakers="channels")
    r = out.result
    check_result(r)
    turns = r["turns"]
    _check_turns(turns, transcribed=False)
    assert [s["id"] for s in r["speakers"]] == ["left", "right"]
    names = ["left", "right"]
    for t in turns:  # each turn lies within a span of its own channel's voice
        own = [(s, e) for ch, s, e in spans if names[ch] == t["speaker"]]
        assert any(s - TOLERANCE_S <= t["start_s"] and t["end_s"] <= e + TOLERANCE_S for s, e in own), t
    for ch, s, e in spans:  # each voice's stretch is covered, its start and end found within the tolerance
        inside = [t for t in turns if t["speaker"] == names[ch] and t["start_s"] < e and t["end_s"] > s]
        assert inside, (ch, s, e)
        assert abs(inside[0]["start_s"] - s) <= TOLERANCE_S and abs(inside[-1]["end_s"] - e) <= TOLERANCE_S
    # the speaker order follows the channels' order of speaking
    assert [names[ch] for ch, _, _ in spans] == [k for i, k in enumerate(t["speaker"] for t in turns)
                                                 if i == 0 or k != turns[i - 1]["speaker"]]  # fmt: skip

    folder = out.run.path
    cues = list(srt.parse((folder / "transcript.srt").read_text("utf-8")))
    assert len(cues) == len(turns)
    for cue, t in zip(cues, turns, strict=True):
        assert abs(cue.start.total_seconds() - t["start_s"]) < 0.002 and abs(cue.end.total_seconds() - t["end_s"]) < 0.002
        assert cue.content == f"[{t['speaker']} · {EMOJI[t['emotion']]} {t['emotion']} {t['confidence']:.2f}]"
    vtt = webvtt.read(str(folder / "transcript.vtt"))
    assert [c.identifier for c in vtt.captions] == [f"turn-{t['index']}" for t in turns]
    for cap, t in zip(vtt.captions, turns, strict=True):
        assert abs(cap.start_time.in_milliseconds() - t["start_s"] * 1000) <= 1
        assert abs(cap.end_time.in_milliseconds() - t["end_s"] * 1000) <= 1
        assert cap.text == cue_text(t)
    rows = list(csv.DictReader(io.StringIO((folder / "turns.csv").read_text("utf-8"))))
    assert [r_["speaker"] for r_ in rows] == [t["speaker"] for t in turns]
    assert [float(r_["score_angry"]) for r_ in rows] == [t["scores"]["angry"] for t in turns]


def test_auto_with_transcript(conv_settings, engine, tmp_path):
    from emotion2vec_webui.audio.dialogue import long_dialogue
    from emotion2vec_webui.audio.signals import espeak_available, write_audio

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    mono, rate, _ = long_dialogue(20)
    path = write_audio(tmp_path / "mono.wav", mono, rate)
    r = _run(conv_settings, engine, path, speakers="auto", transcribe=True, num_speakers=2).result
    check_result(r)
    _check_turns(r["turns"], transcribed=True)
    assert {t["speaker"] for t in r["turns"]} <= {s["id"] for s in r["speakers"]}
    assert all(s["id"].startswith("S") for s in r["speakers"])
    assert abs(sum(s["speaking_share"] for s in r["speakers"]) - 1) < 1e-3


def test_none_is_the_default_and_has_no_turns(settings, engine, speech_wav):
    out = _run(settings, engine, speech_wav)
    assert out.result["speakers"] is None and out.result["turns"] is None
    assert not (out.run.path / "transcript.srt").exists()


def test_unknown_asr_model_is_model_unavailable(conv_settings, engine, stereo_dialogue):
    from emotion2vec_webui.errors import E2VError

    with pytest.raises(E2VError) as err:
        _run(conv_settings, engine, stereo_dialogue[0], speakers="channels", transcribe=True, asr_model="no-such-asr")
    assert err.value.code == "model_unavailable"


def test_granularity_frame_gives_each_turn_its_track_and_the_same_turn_emotions(conv_settings, engine, stereo_dialogue):
    """``granularity=frame`` (the Conversation tab's): every turn carries ``frames`` (schema-checked), one row per
    20 ms of the turn, and the turns' emotions and scores are those of an utterance-granularity run."""
    path, _ = stereo_dialogue
    framed = _run(conv_settings, engine, path, speakers="channels", granularity="frame").result
    plain = _run(conv_settings, engine, path, speakers="channels").result
    check_result(framed)
    assert [(t["start_s"], t["emotion"], t["scores"]) for t in framed["turns"]] == [
        (t["start_s"], t["emotion"], t["scores"]) for t in plain["turns"]
    ]
    assert all("frames" not in t for t in plain["turns"])
    for t in framed["turns"]:
        rows = t["frames"]["scores"]
        assert abs(len(rows) * t["frames"]["hop_s"] - (t["end_s"] - t["start_s"])) <= 0.06
        assert t["frames"]["smoothing_s"] == conv_settings.frame_smoothing_s
