"""engine/call_summary.py on hand-built score sequences: every figure against a hand computation."""

from __future__ import annotations

import pytest

from emotion2vec_webui.engine import call_summary as cs
from emotion2vec_webui.engine.conversation import speaker_summaries
from emotion2vec_webui.labels import EMOTIONS


def scores(**given) -> dict:
    """Nine scores: the given ones, the rest of the mass on neutral."""
    out = {k: 0.0 for k in EMOTIONS}
    out.update(given)
    out["neutral"] += 1.0 - sum(out.values())
    return out


def turn(index, speaker, start, end, **given) -> dict:
    s = scores(**given)
    top = max(s, key=s.get)
    return {"index": index, "speaker": speaker, "start_s": start, "end_s": end, "emotion": top,
            "confidence": s[top], "scores": s}  # fmt: skip


def call(rise_at: float = 60.0, n: int = 30, step: float = 4.0, length: float = 3.5) -> list[dict]:
    """Two speakers alternating every ``step`` s; the right speaker's anger jumps 0.1 → 0.8 at ``rise_at``."""
    out = []
    for i in range(n):
        t = i * step
        speaker = "left" if i % 2 == 0 else "right"
        angry = 0.8 if speaker == "right" and t >= rise_at else 0.1
        out.append(turn(i, speaker, t, t + length, angry=angry))
    return out


def test_definitions():
    s = scores(angry=0.2, sad=0.1, happy=0.3, surprised=0.25)
    assert cs.negativity(s) == pytest.approx(0.3)
    assert cs.balance(s) == pytest.approx(0.0)
    assert cs.intensity(s) == pytest.approx(0.3)


def test_per_speaker_figures_equal_hand_computations():
    turns = [
        turn(0, "A", 0.0, 2.0, happy=0.6),  # 2 s happy, confidence 0.6
        turn(1, "B", 2.0, 3.0, angry=0.9),  # 1 s angry
        turn(2, "A", 3.0, 9.0, sad=0.2),  # 6 s neutral (0.8), negativity 0.2
    ]
    out = cs.call_summary(turns, 10.0, {"A": "Ann"})
    a, b = out["speakers"]
    assert (a["id"], a["label"], b["label"]) == ("A", "Ann", "B")
    assert a["talk_s"] == 8.0 and b["talk_s"] == 1.0 and out["speech_s"] == 9.0
    assert a["talk_share"] == pytest.approx(8 / 9, abs=1e-4)
    assert a["turns"] == 2
    assert a["emotion_share"]["happy"] == 0.25 and a["emotion_share"]["neutral"] == 0.75
    assert a["mean_confidence"] == pytest.approx((2 * 0.6 + 6 * 0.8) / 8, abs=1e-4)
    assert a["mean_negativity"] == pytest.approx(6 * 0.2 / 8, abs=1e-4)
    assert a["mean_balance"] == pytest.approx((2 * 0.6 - 6 * 0.2) / 8, abs=1e-4)
    # A speaks 8 s in all: the baseline (first 20 s of their speech) is all of it, so no rises or events
    assert a["baseline"] == {"negativity": pytest.approx(0.15), "balance": pytest.approx(0.0), "speech_s": 8.0,
                             "until_s": 9.0}  # fmt: skip
    assert a["largest_rises"] == [] and out["events"] == [] and out["escalations"] == 0
    assert [t["index"] for t in a["intense_turns"]] == [0, 2]  # happy 0.6 before sad 0.2
    assert b["intense_turns"][0]["intensity"] == 0.9
    assert out["comparison"] is None  # no agent / customer names


def test_emotion_share_equals_the_speakers_block():
    turns = call()
    mine = cs.call_summary(turns, 120.0)["speakers"]
    theirs = speaker_summaries(turns, ["left", "right"], "channels")
    for m, t in zip(mine, theirs, strict=True):
        assert m["emotion_share"] == t["emotion_share"]
        assert (m["talk_s"], m["turns"]) == (t["speaking_s"], t["turns"])


def test_baseline_window_counts_speech_time_not_clock_time():
    # 8 turns of 3 s, 10 s apart: the first 20 s of speech end 2 s into the 7th turn (t = 62 s)
    turns = [turn(i, "A", i * 10.0, i * 10.0 + 3.0, angry=0.1 if i < 6 else 0.5) for i in range(8)]
    block = cs.call_summary(turns, 80.0)["speakers"][0]
    assert block["baseline"]["speech_s"] == 20.0
    assert block["baseline"]["until_s"] == 62.0
    assert block["baseline"]["negativity"] == pytest.approx((18 * 0.1 + 2 * 0.5) / 20, abs=1e-4)
    # the 7th turn began inside the baseline; only the 8th is compared with it
    assert [r["index"] for r in block["largest_rises"]] == [7]
    assert block["largest_rises"][0]["rise"] == pytest.approx(0.5 - 0.14, abs=1e-4)


@pytest.mark.parametrize("rise_at", [60.0, 84.0])
def test_a_rise_in_negative_scores_is_an_escalation_at_its_time(rise_at):
    out = cs.call_summary(call(rise_at=rise_at), 120.0)
    escalations = [e for e in out["events"] if e["type"] == "escalation"]
    assert len(escalations) == 1 and out["escalations"] == 1
    e = escalations[0]
    assert e["speaker"] == "right"
    assert abs(e["time_s"] - rise_at) <= 1.0
    assert e["baseline"] == pytest.approx(0.1) and e["negativity"] == pytest.approx(0.8)
    right = out["speakers"][1]
    assert right["escalations"] == 1 and out["speakers"][0]["escalations"] == 0
    assert right["largest_rises"][0]["start_s"] == rise_at and right["largest_rises"][0]["rise"] == pytest.approx(0.7)


def test_de_escalation_has_hysteresis():
    negs = [0.1] * 6 + [0.5, 0.3, 0.5, 0.2, 0.2]  # up at turn 6; 0.3 is above baseline + 0.15; down at turn 9
    turns = [turn(i, "A", i * 5.0, i * 5.0 + 4.0, angry=v) for i, v in enumerate(negs)]
    events = cs.call_summary(turns, 60.0)["events"]
    assert [(e["type"], e["time_s"]) for e in events] == [("escalation", 30.0), ("de-escalation", 45.0)]


def test_arc_is_the_windowed_speech_weighted_balance():
    turns = [turn(0, "A", 0.0, 10.0, happy=0.5), turn(1, "B", 10.0, 20.0, angry=0.5)]
    arc = cs.call_summary(turns, 20.0)["arc"]
    assert arc["step_s"] == 1.0 and len(arc["values"]) == 21
    assert arc["values"][0] == 0.5  # window [-7.5, 7.5]: only A's happy speech
    assert arc["values"][10] == 0.0  # [2.5, 17.5]: 7.5 s of each
    assert arc["values"][5] == pytest.approx((10 * 0.5 - 2.5 * 0.5) / 12.5, abs=1e-4)  # [-2.5, 12.5]
    assert arc["values"][20] == -0.5
    assert all(-1 <= v <= 1 for v in arc["values"])


def test_arc_keeps_the_last_value_through_silence_and_is_bounded_in_length():
    turns = [turn(0, "A", 0.0, 2.0, happy=1.0), turn(1, "A", 100.0, 102.0, sad=1.0)]
    values = cs.call_summary(turns, 102.0)["arc"]["values"]
    assert values[50] == 1.0 and values[-1] == -1.0
    long = cs.arc([turn(0, "A", 0.0, 7200.0, happy=0.2)], 7200.0)
    assert len(long["values"]) <= cs.ARC_MAX_POINTS + 1 and long["step_s"] == 6.0


def test_turning_points_on_a_constructed_curve():
    curve = [0.0] * 60 + [-0.6] * 60 + [0.3] * 60
    points = cs.turning_points(curve, 1.0)
    assert [(p["time_s"], p["direction"]) for p in points] == [(60.0, "down"), (120.0, "up")]
    assert points[0]["before"] == 0.0 and points[0]["after"] == -0.6 and points[1]["change"] == pytest.approx(0.9)


def test_no_turning_point_below_the_minimum_size_or_length():
    assert cs.turning_points([0.0] * 60 + [-0.1] * 60, 1.0) == []  # 0.1 < TURN_MIN_CHANGE
    assert cs.turning_points([0.0] * 60 + [-0.9] * 10 + [0.0] * 60, 1.0) == []  # 10 s < TURN_MIN_S
    assert cs.turning_points([], 1.0) == []


def test_worst_moment_is_the_arcs_minimum():
    out = cs.call_summary(call(), 120.0)
    values = out["arc"]["values"]
    assert out["worst_moment"]["arc"] == min(values)
    assert values[round(out["worst_moment"]["time_s"] / out["arc"]["step_s"])] == min(values)


def test_agent_and_customer_compared_when_named():
    out = cs.call_summary(call(), 120.0, {"left": "Agent Smith", "right": "客户"})
    c = out["comparison"]
    assert (c["agent"], c["customer"]) == ("left", "right")
    left, right = out["speakers"]
    assert c["escalations"] == {"agent": 0, "customer": 1}
    assert c["mean_negativity"] == {"agent": left["mean_negativity"], "customer": right["mean_negativity"]}
    assert c["customer_mood_change"] == pytest.approx(right["closing_balance"] - right["baseline"]["balance"])
    assert right["closing_balance"] == pytest.approx(-0.8) and right["baseline"]["balance"] == pytest.approx(-0.1)
    assert cs.call_summary(call(), 120.0, {"left": "Agent", "right": "Agent 2"})["comparison"] is None


def test_summary_for_result_turns_segments_or_none():
    turns = call()
    result = {"audio": {"duration_s": 120.0}, "turns": turns, "segments": None,
              "speakers": [{"id": "left", "label": "Agent"}, {"id": "right", "label": "right"}]}  # fmt: skip
    out = cs.summary_for_result(result)
    assert out["source"] == "turns" and out["speakers"][0]["label"] == "Agent"
    segs = [{k: t[k] for k in ("start_s", "end_s", "emotion", "confidence", "scores")} for t in turns[::2]]
    single = cs.summary_for_result({"audio": {"duration_s": 120.0}, "turns": None, "segments": segs})
    assert single["source"] == "segments" and [s["id"] for s in single["speakers"]] == [cs.ALL_SPEAKER]
    assert single["speakers"][0]["turns"] == len(segs)
    assert cs.summary_for_result({"audio": {"duration_s": 1.0}, "turns": None, "segments": None}) is None
    empty = cs.summary_for_result({"audio": {"duration_s": 3.0}, "turns": [], "speakers": []})
    assert empty["speakers"] == [] and empty["arc"]["values"] == [] and empty["worst_moment"] is None


def test_arc_at_interpolates():
    summary = {"arc": {"step_s": 2.0, "values": [0.0, 1.0]}}
    assert cs.arc_at(summary, 1.0) == 0.5 and cs.arc_at(summary, 9.0) == 1.0
    assert cs.arc_at({"arc": {"step_s": 1.0, "values": []}}, 0.0) is None


def test_a_dimensional_heads_valence_gives_a_second_arc():
    hop = 0.02
    valence = [[0.3, 0.0]] * 1500 + [[0.3, 1.0]] * 1500  # (arousal, valence): 0 for 30 s, then 1 for 30 s
    dims = {"name": "av", "frames": {"hop_s": hop, "targets": ["arousal", "Valence"], "values": valence}}
    turns = [turn(0, "A", 0.0, 60.0, happy=0.5)]
    out = cs.summary_for_result({"audio": {"duration_s": 60.0}, "turns": turns, "speakers": [], "dimensions": dims})
    arc = out["dimension_arc"]
    assert (arc["target"], arc["head"], arc["step_s"], len(arc["values"])) == ("Valence", "av", 1.0, 61)
    assert arc["values"][0] == 0.0 and arc["values"][60] == 1.0
    assert arc["values"][30] == pytest.approx(0.5, abs=0.01)  # the window [22.5, 37.5] s is half and half
    assert out["arc"]["values"][0] == 0.5  # the nine-class arc is unchanged
    no_valence = {"name": "a", "frames": {"hop_s": hop, "targets": ["arousal"], "values": [[0.1]] * 10}}
    assert cs.summary_for_result({**{"audio": {"duration_s": 60.0}, "turns": turns}, "dimensions": no_valence})[
        "dimension_arc"] is None  # fmt: skip
