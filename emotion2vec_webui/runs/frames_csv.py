"""Raw per-frame scores: their rounding in result.json, and ``frames.csv`` for people who use a spreadsheet.

One header row (``time_s`` and the nine English class keys, model order), then
one row per frame: the frame's start time (index × ``hop_s``) and the nine
unsmoothed scores from result.json ``frames.raw_scores`` (rows sum to 1 up to
the rounding). The smoothed series stays in result.json ``frames.scores``;
see docs/result-json.md for how one follows from the other. With a
dimensional (regression) head, its targets follow the nine classes as more
columns (``arousal``, ``valence`` …: ``dimensions.frames.raw_values``,
unsmoothed too; a target may not be named like a class or ``time_s``).

Raw scores are rounded to significant digits, not decimals: a random-weight
(or very confident) model gives scores like 1e-9, and the smoothed series is
derived from their logarithms, which a 5-decimal rounding to 0 would destroy.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from emotion2vec_webui.user_text import csv_row

FRAMES_CSV = "frames.csv"
RAW_DIGITS = 5  # significant digits of frames.raw_scores


def round_significant(scores: np.ndarray, digits: int = RAW_DIGITS) -> list[list[float]]:
    """``[T, C]`` scores as nested lists of floats rounded to ``digits`` significant digits (for JSON)."""
    fmt = f"{{:.{digits}g}}"
    return [[float(fmt.format(v)) for v in row] for row in np.asarray(scores, dtype=np.float64).tolist()]


def frames_csv_text(result: dict) -> str | None:
    """The text of frames.csv for a result.json object, or None when it has no raw frame scores.

    Args:
        result: a result.json object (``frames.hop_s``, ``frames.labels``, ``frames.raw_scores``).

    Returns:
        CSV text with ``\\n`` line ends, or None (utterance granularity, or a result without raw scores).
    """
    frames = result.get("frames") or {}
    rows = frames.get("raw_scores")
    if not rows:
        return None
    hop = float(frames["hop_s"])
    targets, values = _dimension_columns(result, len(rows))
    header = io.StringIO()  # labels come with the model: quoted like every CSV cell (user_text.csv_cell)
    csv.writer(header, lineterminator="").writerow(csv_row(["time_s", *frames["labels"], *targets]))
    lines = [header.getvalue()]
    lines.extend(
        f"{i * hop:.2f}," + ",".join(repr(float(v)) for v in (row if values is None else [*row, *values[i]]))
        for i, row in enumerate(rows)
    )
    return "\n".join(lines) + "\n"


def _dimension_columns(result: dict, count: int) -> tuple[list[str], list[list[float]] | None]:
    """A regression head's target names and per-frame raw values, when it has one per nine-class frame."""
    dims = ((result.get("dimensions") or {}).get("frames")) or {}
    values = dims.get("raw_values")
    if not values or len(values) != count:
        return [], None
    return list(dims["targets"]), values
