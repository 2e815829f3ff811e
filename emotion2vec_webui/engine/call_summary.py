"""From turns to insight: the ``summary`` block of result.json (per speaker, the arc, turning points, events).

Pure: it reads a conversation's turns (or a single-speaker file's segments) —
each a span with a speaker, ``start_s``/``end_s`` and the nine scores — and
returns plain dicts; no files, no model. docs/conversations.md ("The summary
block") documents every figure; the definitions are here once:

- **negativity** of a span = angry + disgusted + fearful + sad (the same four
  classes as ``conversation.NEGATIVE``); **positivity** = happy. Surprised,
  neutral, other and unknown count for neither (surprise can go either way).
- **balance** = positivity − negativity, in [−1, 1].
- **intensity** = the largest score among the six emotional classes (angry,
  disgusted, fearful, happy, sad, surprised): how strongly *some* emotion shows.
- **the arc**: the call's balance over time, sampled every ``step_s``
  (:data:`ARC_STEP_S`, more when a long file would pass :data:`ARC_MAX_POINTS`)
  as the speech-time-weighted mean balance of every span overlapping a centred
  window of :data:`ARC_WINDOW_S`. It is computed exactly from the running
  integrals of balance × speech and of speech (piecewise linear, evaluated with
  ``np.interp``), so it costs O(spans + points). A window with no speech keeps
  the previous value (the first value before any speech).
- **turning points**: change points of the arc's mean, found by binary
  segmentation (split where the squared error falls most) with segments of at
  least :data:`TURN_MIN_S` and neighbouring means at least
  :data:`TURN_MIN_CHANGE` apart, at most :data:`TURN_MAX` of them. ``ruptures``
  does this too, but it is not a dependency and ~40 lines of numpy suffice.
- **baseline**: a speaker's speech-time-weighted mean negativity and balance
  over the first :data:`BASELINE_S` seconds of *their* speech.
- **escalation**: a speaker's turn, after the baseline window, whose negativity
  reaches baseline + :data:`ESCALATION_RISE`; **de-escalation**: a later turn
  back at or below baseline + :data:`DEESCALATION_RISE` (hysteresis, so one
  value near the threshold does not flip back and forth). The event's time is
  that turn's start.
- **dimension arc**: with a dimensional head that has a ``valence`` target at
  frame granularity, its valence averaged over the same windows, in the head's
  own units (:func:`dimension_arc`), beside the nine-class arc.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from emotion2vec_webui.labels import EMOTIONS

NEGATIVE = ("angry", "disgusted", "fearful", "sad")  # negativity = their sum
POSITIVE = ("happy",)  # positivity = their sum; balance = positivity - negativity
EMOTIONAL = ("angry", "disgusted", "fearful", "happy", "sad", "surprised")  # intensity = the largest of these
ARC_STEP_S = 1.0  # one arc value per second ...
ARC_MAX_POINTS = 1200  # ... or fewer, evenly spaced, for recordings longer than 20 minutes
ARC_WINDOW_S = 15.0  # the arc's centred smoothing window
TURN_MIN_S = 20.0  # a turning point's segments last at least this long
TURN_MIN_CHANGE = 0.2  # and their mean balances differ by at least this
TURN_MAX = 8  # at most this many turning points
BASELINE_S = 20.0  # a speaker's baseline: the first this-many seconds of their speech
ESCALATION_RISE = 0.3  # escalation: negativity at least baseline + this
DEESCALATION_RISE = 0.15  # de-escalation: back at or below baseline + this
TOP_N = 3  # most intense turns, largest rises
CLOSING_S = 20.0  # a speaker's closing balance: their last this-many seconds of speech
AGENT_NAMES = ("agent", "rep", "operator", "客服", "坐席")  # a label starting with one of these is the agent
CUSTOMER_NAMES = ("customer", "caller", "client", "客户", "顾客")  # ... the customer
ALL_SPEAKER = "all"  # the one speaker of a single-speaker file (summary from segments)
_ROUND = 4


def negativity(scores: Mapping[str, float]) -> float:
    """angry + disgusted + fearful + sad."""
    return float(sum(scores[k] for k in NEGATIVE))


def balance(scores: Mapping[str, float]) -> float:
    """happy − (angry + disgusted + fearful + sad), in [−1, 1]."""
    return float(sum(scores[k] for k in POSITIVE)) - negativity(scores)


def intensity(scores: Mapping[str, float]) -> float:
    """The largest of the six emotional classes' scores."""
    return float(max(scores[k] for k in EMOTIONAL))


def definitions() -> dict:
    """The constants the figures are computed with (``summary.definitions``)."""
    return {
        "negative": list(NEGATIVE), "positive": list(POSITIVE), "emotional": list(EMOTIONAL),
        "arc_window_s": ARC_WINDOW_S, "baseline_s": BASELINE_S, "closing_s": CLOSING_S,
        "escalation_rise": ESCALATION_RISE, "deescalation_rise": DEESCALATION_RISE,
        "turn_min_s": TURN_MIN_S, "turn_min_change": TURN_MIN_CHANGE,
    }  # fmt: skip


def _r(x: float) -> float:
    return round(float(x), _ROUND)


def _dur(span: Mapping) -> float:
    return max(0.0, float(span["end_s"]) - float(span["start_s"]))


def _weighted(spans: Sequence[Mapping], value, lo: float, hi: float) -> tuple[float, float]:
    """(∫ value · speech, ∫ speech) over the part of the speaker's *speech time* from ``lo`` to ``hi`` seconds."""
    num = den = 0.0
    t = 0.0
    for s in spans:
        d = _dur(s)
        part = max(0.0, min(t + d, hi) - max(t, lo))
        num += part * value(s["scores"])
        den += part
        t += d
    return num, den


def emotion_share(spans: Sequence[Mapping]) -> dict[str, float]:
    """Share of the spans' time per top emotion (nine keys; all 0 without time)."""
    total = sum(_dur(s) for s in spans)
    out = {k: 0.0 for k in EMOTIONS}
    for s in spans:
        out[s["emotion"]] += _dur(s) / (total or 1.0)
    return {k: _r(v) for k, v in out.items()}


def _brief(span: Mapping, **extra) -> dict:
    return {"index": span["index"], "start_s": _r(span["start_s"]), "end_s": _r(span["end_s"]),
            "emotion": span["emotion"], **{k: _r(v) for k, v in extra.items()}}  # fmt: skip


def speaker_events(spans: Sequence[Mapping], base_neg: float) -> list[dict]:
    """Escalation / de-escalation events of one speaker's time-ordered spans against their baseline negativity."""
    events = []
    escalated = False
    t = 0.0
    for s in spans:
        after_baseline = t >= BASELINE_S - 1e-9
        t += _dur(s)
        if not after_baseline:
            continue
        neg = negativity(s["scores"])
        if not escalated and neg >= base_neg + ESCALATION_RISE:
            escalated = True
            events.append({"type": "escalation", "speaker": s["speaker"], "time_s": _r(s["start_s"]),
                           "index": s["index"], "negativity": _r(neg), "baseline": _r(base_neg)})  # fmt: skip
        elif escalated and neg <= base_neg + DEESCALATION_RISE:
            escalated = False
            events.append({"type": "de-escalation", "speaker": s["speaker"], "time_s": _r(s["start_s"]),
                           "index": s["index"], "negativity": _r(neg), "baseline": _r(base_neg)})  # fmt: skip
    return events


def speaker_block(speaker: str, label: str, spans: Sequence[Mapping], total_s: float) -> tuple[dict, list[dict]]:
    """One speaker's summary and their events (``spans``: that speaker's, in time order)."""
    talk = sum(_dur(s) for s in spans)
    conf = sum(_dur(s) * float(s["confidence"]) for s in spans) / (talk or 1.0)
    num, den = _weighted(spans, negativity, 0.0, BASELINE_S)
    base_neg = num / den if den else 0.0
    bnum, _ = _weighted(spans, balance, 0.0, BASELINE_S)
    cnum, cden = _weighted(spans, balance, max(0.0, talk - CLOSING_S), talk)
    baseline_end = 0.0  # the file time at which the baseline window closed
    t = 0.0
    for s in spans:
        if t + _dur(s) >= BASELINE_S or s is spans[-1]:
            baseline_end = float(s["start_s"]) + min(_dur(s), BASELINE_S - t)
            break
        t += _dur(s)
    intense = sorted(spans, key=lambda s: (-intensity(s["scores"]), s["start_s"]))[:TOP_N]
    rises, t = [], 0.0
    for s in spans:
        if t >= BASELINE_S - 1e-9 and negativity(s["scores"]) - base_neg > 0:
            rises.append(s)
        t += _dur(s)
    rises = sorted(rises, key=lambda s: (-(negativity(s["scores"]) - base_neg), s["start_s"]))[:TOP_N]
    events = speaker_events(spans, base_neg)
    block = {
        "id": speaker, "label": label, "talk_s": _r(talk), "talk_share": _r(talk / total_s) if total_s else 0.0,
        "turns": len(spans), "emotion_share": emotion_share(spans), "mean_confidence": _r(conf),
        "mean_negativity": _r(_weighted(spans, negativity, 0.0, talk)[0] / (talk or 1.0)),
        "mean_balance": _r(_weighted(spans, balance, 0.0, talk)[0] / (talk or 1.0)),
        "intense_turns": [_brief(s, intensity=intensity(s["scores"])) for s in intense],
        "baseline": {"negativity": _r(base_neg), "balance": _r(bnum / den if den else 0.0),
                     "speech_s": _r(den), "until_s": _r(baseline_end)},
        "closing_balance": _r(cnum / cden if cden else 0.0),
        "largest_rises": [_brief(s, negativity=negativity(s["scores"]), rise=negativity(s["scores"]) - base_neg)
                          for s in rises],
        "escalations": sum(e["type"] == "escalation" for e in events),
    }  # fmt: skip
    return block, events


def arc(spans: Sequence[Mapping], duration_s: float) -> dict:
    """The call's smoothed balance over time: ``{step_s, window_s, values}`` (value *i* at *i* × ``step_s``)."""
    duration_s = max(float(duration_s), max((float(s["end_s"]) for s in spans), default=0.0))
    step = max(ARC_STEP_S, duration_s / ARC_MAX_POINTS)
    if not spans or duration_s <= 0:
        return {"step_s": _r(step), "window_s": ARC_WINDOW_S, "values": []}
    n = int(np.floor(duration_s / step)) + 1
    times = np.arange(n) * step
    starts = np.array([float(s["start_s"]) for s in spans])
    ends = np.array([max(float(s["end_s"]), float(s["start_s"])) for s in spans])
    vals = np.array([balance(s["scores"]) for s in spans])

    def integral(weights: np.ndarray, at: np.ndarray) -> np.ndarray:
        # Σ_i weights_i · |[start_i, end_i] ∩ (-∞, at]|, a piecewise-linear function of `at`
        knots = np.unique(np.concatenate([starts, ends]))
        slope_change = np.zeros(len(knots))
        np.add.at(slope_change, np.searchsorted(knots, starts), weights)
        np.add.at(slope_change, np.searchsorted(knots, ends), -weights)
        slope = np.cumsum(slope_change)[:-1]
        values = np.concatenate([[0.0], np.cumsum(slope * np.diff(knots))])
        return np.interp(at, knots, values, left=0.0, right=values[-1])

    lo, hi = times - ARC_WINDOW_S / 2, times + ARC_WINDOW_S / 2
    speech = integral(np.ones(len(spans)), hi) - integral(np.ones(len(spans)), lo)
    weighted = integral(vals, hi) - integral(vals, lo)
    has = speech > 1e-9
    out = np.where(has, weighted / np.where(has, speech, 1.0), np.nan)
    first = out[has][0] if has.any() else 0.0
    last = first
    for i in range(n):  # a window with no speech keeps the value before it
        if np.isnan(out[i]):
            out[i] = last
        last = out[i]
    return {"step_s": _r(step), "window_s": ARC_WINDOW_S, "values": [_r(v) for v in out]}


def turning_points(values: Sequence[float], step_s: float) -> list[dict]:
    """Change points of the mean of ``values`` (binary segmentation; see the module docstring)."""
    x = np.asarray(values, dtype=np.float64)
    min_len = max(1, int(np.ceil(TURN_MIN_S / step_s)))
    if len(x) < 2 * min_len:
        return []
    c1, c2 = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])

    def sse(a: int, b: int) -> float:
        return c2[b] - c2[a] - (c1[b] - c1[a]) ** 2 / (b - a)

    def mean(a: int, b: int) -> float:
        return (c1[b] - c1[a]) / (b - a)

    bounds = [0, len(x)]
    while len(bounds) - 2 < TURN_MAX:
        best = None  # (gain, split)
        for a, b in zip(bounds, bounds[1:], strict=False):
            for k in range(a + min_len, b - min_len + 1):
                if abs(mean(a, k) - mean(k, b)) < TURN_MIN_CHANGE:
                    continue
                gain = sse(a, b) - sse(a, k) - sse(k, b)
                if best is None or gain > best[0] + 1e-12:
                    best = (gain, k)
        if best is None:
            break
        bounds = sorted([*bounds, best[1]])
    out = []
    for a, k, b in zip(bounds, bounds[1:], bounds[2:], strict=False):
        before, after = mean(a, k), mean(k, b)
        if abs(after - before) >= TURN_MIN_CHANGE:
            out.append({"time_s": _r(k * step_s), "before": _r(before), "after": _r(after),
                        "change": _r(after - before), "direction": "up" if after > before else "down"})  # fmt: skip
    return out


def _role(label: str, names: Iterable[str]) -> bool:
    low = label.casefold().strip()
    return any(low.startswith(n) for n in names)


def comparison(blocks: Sequence[Mapping]) -> dict | None:
    """Agent vs customer, when exactly one speaker's label names each role (``Agent``, ``客户`` …); else None."""
    agents = [b for b in blocks if _role(b["label"], AGENT_NAMES)]
    customers = [b for b in blocks if _role(b["label"], CUSTOMER_NAMES)]
    if len(agents) != 1 or len(customers) != 1:
        return None
    a, c = agents[0], customers[0]
    keys = ("talk_share", "mean_negativity", "mean_balance", "mean_confidence", "escalations", "closing_balance")
    out = {"agent": a["id"], "customer": c["id"]}
    for k in keys:
        out[k] = {"agent": a[k], "customer": c[k]}
    out["customer_mood_change"] = _r(c["closing_balance"] - c["baseline"]["balance"])
    return out


def call_summary(
    spans: Sequence[Mapping], duration_s: float, labels: Mapping[str, str] | None = None, source: str = "turns"
) -> dict:
    """result.json ``summary`` for a conversation's turns or a file's segments.

    Args:
        spans: dicts with ``speaker``, ``start_s``, ``end_s``, ``emotion``, ``confidence``, ``scores`` (nine) and
            ``index``; in any order.
        duration_s: the recording's length (the arc covers it).
        labels: speaker id → display name (the id when absent).
        source: ``turns`` (a conversation) or ``segments`` (one speaker's file).

    Returns:
        The summary block (docs/conversations.md, "The summary block").
    """
    spans = sorted(spans, key=lambda s: (float(s["start_s"]), float(s["end_s"])))
    labels = labels or {}
    order = list(dict.fromkeys(s["speaker"] for s in spans))
    total = sum(_dur(s) for s in spans)
    blocks, events = [], []
    for sp in order:
        block, ev = speaker_block(sp, labels.get(sp) or sp, [s for s in spans if s["speaker"] == sp], total)
        blocks.append(block)
        events += ev
    events.sort(key=lambda e: (e["time_s"], e["speaker"]))
    curve = arc(spans, duration_s)
    worst = None
    if curve["values"]:
        i = int(np.argmin(curve["values"]))
        worst = {"time_s": _r(i * curve["step_s"]), "arc": curve["values"][i]}
    return {
        "source": source,
        "duration_s": _r(duration_s),
        "speech_s": _r(total),
        "speakers": blocks,
        "arc": curve,
        "turning_points": turning_points(curve["values"], curve["step_s"]),
        "events": events,
        "escalations": sum(e["type"] == "escalation" for e in events),
        "worst_moment": worst,
        "comparison": comparison(blocks),
        "definitions": definitions(),
    }


def dimension_arc(dimensions: Mapping | None, duration_s: float) -> dict | None:
    """A dimensional head's valence over time, on the arc's grid (None without a ``valence`` target's frames).

    ``values[i]``: the mean of the head's smoothed per-frame valence (``dimensions.frames``) over the same centred
    :data:`ARC_WINDOW_S` window as the arc, in the head's own units (its training CSV's scale), so it is shown
    beside the nine-class arc, never mixed with it or its thresholds.
    """
    frames = (dimensions or {}).get("frames") or {}
    targets = [str(t).casefold() for t in frames.get("targets") or []]
    if "valence" not in targets or not frames.get("values"):
        return None
    series = np.asarray(frames["values"], dtype=np.float64)[:, targets.index("valence")]
    hop = float(frames["hop_s"])
    step = max(ARC_STEP_S, float(duration_s) / ARC_MAX_POINTS)
    times = np.arange(int(np.floor(max(float(duration_s), len(series) * hop) / step)) + 1) * step
    cum = np.concatenate([[0.0], np.cumsum(series)])
    lo = np.clip(np.floor((times - ARC_WINDOW_S / 2) / hop), 0, len(series)).astype(int)
    hi = np.clip(np.ceil((times + ARC_WINDOW_S / 2) / hop), 0, len(series)).astype(int)
    hi = np.maximum(hi, np.minimum(lo + 1, len(series)))
    values = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
    return {"target": frames["targets"][targets.index("valence")], "head": dimensions.get("name"),
            "step_s": _r(step), "window_s": ARC_WINDOW_S, "values": [_r(v) for v in values]}  # fmt: skip


def summary_for_result(result: Mapping) -> dict | None:
    """The ``summary`` of a result.json: from its ``turns``, else from its ``segments`` (one speaker), else None.

    With a dimensional head that has a ``valence`` target (``dimensions``, frame granularity) the summary also
    gets ``dimension_arc`` (:func:`dimension_arc`); otherwise that key is null.
    """
    duration = float((result.get("audio") or {}).get("duration_s") or 0.0)
    if result.get("turns") is not None:
        labels = {s["id"]: s.get("label") or s["id"] for s in result.get("speakers") or []}
        out = call_summary(result["turns"], duration, labels, "turns")
    elif result.get("segments"):
        spans = [{**s, "index": i, "speaker": ALL_SPEAKER} for i, s in enumerate(result["segments"])]
        out = call_summary(spans, duration, None, "segments")
    else:
        return None
    out["dimension_arc"] = dimension_arc(result.get("dimensions"), duration)
    return out


def arc_at(summary: Mapping, time_s: float) -> float | None:
    """The arc's value at ``time_s`` (linear between samples; None without an arc)."""
    values = summary["arc"]["values"]
    if not values:
        return None
    step = summary["arc"]["step_s"]
    return _r(np.interp(float(time_s), np.arange(len(values)) * step, values))
