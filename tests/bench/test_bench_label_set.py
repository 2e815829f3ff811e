"""``bench --dataset --label-set``: UA/WA/F1 on a benchmark label set beside the published figures (4-class sets)."""

from __future__ import annotations

import json

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.bench.benchmark import ModelBench
from emotion2vec_webui.bench.label_set_table import label_set_markdown, label_set_rows
from emotion2vec_webui.label_sets import LABEL_SETS

# RAVDESS names: neutral, calm, happy, sad, angry, fearful (the third field), two actors each
STEMS = [f"03-01-{e}-01-01-0{k}-{a:02d}" for e in ("01", "02", "03", "04", "05", "06") for k, a in ((1, 1), (2, 2))]


def test_rows_by_hand():
    four = LABEL_SETS["ravdess4"]
    scores = [{"angry": 0.6, "happy": 0.4}, {"happy": 0.7, "sad": 0.3}, {"other": 0.9, "sad": 0.1}, {}]
    refs = ["angry", "angry", "sad", "happy"]  # the last clip failed (no scores): left out
    ok = ModelBench("m", "emotion2vec", True, item_scores=scores)
    rows = label_set_rows([ok, ModelBench("x", "hf", False, "no hub")], refs, four)
    # angry→angry, angry→happy, sad→sad: WA 2/3; recall angry 1/2, sad 1 → UA 0.75; F1 angry 2/3, happy 0, sad 1
    assert rows[0]["n"] == 3 and rows[0]["wa"] == pytest.approx(2 / 3) and rows[0]["ua"] == pytest.approx(0.75)
    assert rows[0]["f1_macro"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert rows[1] == {"model": "x", "n": 0, "ua": None, "wa": None, "f1_macro": None, "f1_weighted": None}
    text = label_set_markdown(rows, four, {"calm": 2})
    assert "| m | 3 | 75.0 | 66.7 | 55.6 |" in text and "| x | 0 | — | — | — |" in text
    assert "| emotion2vec+ large, published (EmoBox_test) | — | 86.0 | 83.9 | 85.0 |" in text and "calm 2" in text
    assert "No published figure for ravdess8" in label_set_markdown(rows, LABEL_SETS["ravdess8"], {})


def test_cli_prints_the_set_table(tiny_model_dir, tmp_path, capsys):
    from emotion2vec_webui.cli.main import main

    (tmp_path / "ravdess").mkdir()
    for i, stem in enumerate(STEMS):
        clip = tone(0.6, 16000, freq=120 + 40 * i)[:, 0] + noise(0.6, 16000, seed=i)[:, 0]
        write_audio(tmp_path / "ravdess" / f"{stem}.wav", clip, 16000, "wav")
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", str(tiny_model_dir), "--durations", "0.5", "--repeats", "1", "--device", "cpu",
                 "--dataset", str(tmp_path / "ravdess"), "--label-set", "ravdess4", "--output", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Label set ravdess4 (RAVDESS, 4 classes" in text and "published (EmoBox_test) | — | 86.0 | 83.9" in text
    assert "Dropped (outside the set): calm 2, fearful 2." in text
    data = json.loads(out.read_text("utf-8"))["label_set"]
    assert data["name"] == "ravdess4" and data["dropped"] == {"calm": 2, "fearful": 2}
    row = data["models"][0]
    assert row["n"] == 8 and 0 <= row["ua"] <= 1 and f"| {row['n']} | {100 * row['ua']:.1f} |" in text
    assert data["published"] == [86.0, 83.9, 85.0]
    assert main(["bench", "--models", str(tiny_model_dir), "--label-set", "ravdess4"]) == 2  # needs --dataset
