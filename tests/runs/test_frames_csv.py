"""Raw frame scores: result.json keeps them, frames.csv lists them, the smoothed series follows from them."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.frames_csv import FRAMES_CSV, frames_csv_text
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.storage import run_path
from tests.spec_check import check_result


def _smoothed_from_raw(raw: np.ndarray, smoothing_s: float, hop_s: float) -> np.ndarray:
    """docs/result-json.md's recipe, written independently of engine/timeline.py."""
    w = max(1, round(smoothing_s / hop_s))
    w += 1 - w % 2
    logp = np.log(np.maximum(raw, 1e-12))
    c = np.cumsum(np.vstack([np.zeros((1, raw.shape[1])), logp]), axis=0)
    i = np.arange(len(raw))
    lo, hi = np.clip(i - w // 2, 0, len(raw)), np.clip(i + w // 2 + 1, 0, len(raw))
    z = (c[hi] - c[lo]) / (hi - lo)[:, None]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_frame_run_keeps_raw_scores_and_writes_frames_csv(engine, settings, speech_wav):
    settings = dataclasses.replace(settings, frame_smoothing_s=0.5)
    out = Recognition(settings, RecognizeOptions("frame", False)).run(speech_wav, lambda fn: fn(engine))
    check_result(out.result, "frame")
    frames = out.result["frames"]
    raw, smoothed = np.asarray(frames["raw_scores"]), np.asarray(frames["scores"])
    assert raw.shape == smoothed.shape and raw.shape[1] == 9
    np.testing.assert_allclose(raw.sum(axis=1), 1, atol=1e-4)
    assert not np.allclose(raw, smoothed, atol=1e-4)  # smoothing did something
    np.testing.assert_allclose(_smoothed_from_raw(raw, frames["smoothing_s"], frames["hop_s"]), smoothed, atol=3e-4)

    path = run_path(settings.output_dir, out.run.run_id, FRAMES_CSV)
    assert path is not None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time_s", *EMOTIONS]
    body = np.array(rows[1:], dtype=np.float64)
    assert body.shape == (len(raw), 10)  # one row per frame: time and nine scores
    np.testing.assert_allclose(body[:, 0], np.arange(len(raw)) * 0.02, atol=1e-9)
    np.testing.assert_allclose(body[:, 1:].sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(body[:, 1:], raw, atol=1e-9)


def test_no_frames_csv_at_utterance_granularity(engine, settings, tone_wav):
    out = Recognition(settings, RecognizeOptions("utterance", False)).run(tone_wav, lambda fn: fn(engine))
    assert run_path(settings.output_dir, out.run.run_id, FRAMES_CSV) is None
    assert frames_csv_text(out.result) is None
    assert frames_csv_text({"frames": {"hop_s": 0.02, "labels": list(EMOTIONS), "scores": [[1] + [0] * 8]}}) is None


def test_frames_csv_header_cells_never_start_a_formula():
    result = {"frames": {"hop_s": 0.02, "labels": ["=1+1", "@x", "calm"], "raw_scores": [[0.5, 0.25, 0.25]]}}
    rows = list(csv.reader(frames_csv_text(result).splitlines()))
    assert rows == [["time_s", "'=1+1", "'@x", "calm"], ["0.00", "0.5", "0.25", "0.25"]]
