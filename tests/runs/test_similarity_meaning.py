"""Similarity says what its numbers mean, compares the score distributions, and keeps a record (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.runs.similarity import (
    js_similarity,
    list_records,
    read_record,
    record_similarity,
    similarity_from_sources,
)


def test_js_similarity_properties():
    rng = np.random.default_rng(1)
    p, q = rng.random(9), rng.random(9)
    assert js_similarity(p, p) == pytest.approx(1.0)
    assert js_similarity(p, 5 * p) == pytest.approx(1.0)  # normalised
    assert js_similarity([1, 0, 0], [0, 1, 0]) == pytest.approx(0.0)
    assert js_similarity(p, q) == pytest.approx(js_similarity(q, p))
    assert 0 < js_similarity(p, q) < 1
    with pytest.raises(ValueError):
        js_similarity([0, 0], [1, 0])


def test_comparison_means_something_and_is_kept(engine, settings, speech_wav, tmp_path):
    other = write_audio(tmp_path / "tone.wav", tone(1.5, 16000)[:, 0] + noise(1.5, 16000)[:, 0], 16000, "wav")
    service = Service(settings, engine)
    service.start()
    try:
        out = similarity_from_sources(service, str(speech_wav), "speech.wav", str(other), "tone.wav")
        again = similarity_from_sources(service, str(speech_wav), "speech.wav", str(speech_wav), "speech.wav")
    finally:
        service.stop()
    assert -1 <= out["cosine"] <= 1 and 0 <= out["scores_similarity"] <= 1 and -1 <= out["scores_cosine"] <= 1
    pa = [out["a"]["scores"][k] for k in out["a"]["scores"]]
    pb = [out["b"]["scores"][k] for k in out["b"]["scores"]]
    assert out["scores_similarity"] == pytest.approx(js_similarity(pa, pb), abs=1e-5)
    assert again["scores_similarity"] == pytest.approx(1.0, abs=1e-6) and again["same_emotion"] is True
    assert "#66" in out["meaning"] and "0.9" in out["meaning"] and "#66" in out["meaning_zh"]
    assert out["verdict"] and out["verdict_zh"]
    # kept: one record per comparison, newest first, read back equal
    records = list_records(settings.output_dir)
    assert [r["id"] for r in records] == [again["record"], out["record"]]
    kept = read_record(settings.output_dir, out["record"])
    assert kept["cosine"] == out["cosine"] and kept["a"]["source_name"] == "speech.wav" and kept["timestamp"]
    assert read_record(settings.output_dir, "../outputs") is None and read_record(settings.output_dir, "x") is None
    assert not list(settings.output_dir.glob("outputs_*")), "similarity writes no run folders"


def test_records_get_unique_names(tmp_path):
    ids = {record_similarity(tmp_path, {"cosine": 0.5, "a": {}, "b": {}}) for _ in range(5)}
    assert len(ids) == 5 and len(list_records(tmp_path)) == 5
    assert all(json.loads((tmp_path / "similarity" / f"{i}.json").read_text())["id"] == i for i in ids)


def test_history_lists_and_opens_a_comparison(tmp_path):
    from emotion2vec_webui.ui import handlers as ui_handlers

    out = {
        "cosine": 0.97, "scores_similarity": 0.42, "scores_cosine": 0.6, "same_emotion": False,
        "verdict": "somewhat different emotion profiles", "verdict_zh": "情绪分布有些不同",
        "meaning": "m", "meaning_zh": "m",
        "a": {"emotion": "happy", "confidence": 0.5, "scores": {"happy": 0.5}, "source_name": "a.wav", "duration_s": 1},
        "b": {"emotion": "sad", "confidence": 0.5, "scores": {"sad": 0.5}, "source_name": "b.wav", "duration_s": 2},
    }  # fmt: skip
    record_id = record_similarity(tmp_path, out)
    rows = ui_handlers.history_rows(tmp_path)
    assert rows[0][0] == record_id and rows[0][2] == "a.wav ↔ b.wav" and "0.970" in rows[0][4]
    view = ui_handlers.view_run(tmp_path, record_id)
    assert view.error_code is None and 'id="similarity_cosine">0.9700' in view.card_html
    assert "somewhat different" in view.card_html and view.files[0].endswith(f"{record_id}.json")
    assert ui_handlers.view_run(tmp_path, "similarity_20990101_000000").error_code == "not_found"
