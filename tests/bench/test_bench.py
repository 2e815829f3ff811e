"""``emotion2vec-webui bench`` end to end on the tiny model and a Hugging Face stand-in."""

from __future__ import annotations

import json

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.bench.benchmark import ModelBench, markdown_table, parse_durations, score_dataset
from emotion2vec_webui.errors import E2VError

# RAVDESS file names: the third field is the emotion (01 neutral, 03 happy, 04 sad, 05 angry, 06 fearful).
RAVDESS = {"03-01-01-01-01-01-01": 0, "03-01-03-01-01-01-02": 1, "03-01-04-01-01-01-03": 2, "03-01-05-01-01-01-04": 3}


@pytest.fixture(scope="module")
def ravdess_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ravdess")
    for i, stem in enumerate(RAVDESS):
        clip = tone(1.0, 16000, freq=120 + 60 * i)[:, 0] + noise(1.0, 16000, seed=i)[:, 0]
        write_audio(folder / f"{stem}.wav", clip, 16000, "wav")
    write_audio(folder / "03-01-06-01-01-01-05.wav", tone(1.0, 16000)[:, 0], 16000, "wav")  # fearful
    return folder


def test_end_to_end_table_and_json(tiny_model_dir, ravdess_dir, tmp_path, monkeypatch, capsys):
    from emotion2vec_webui.cli.main import main

    monkeypatch.setenv("E2V_BENCH_CACHE", str(tmp_path / "hf-random"))
    out = tmp_path / "bench.json"
    models = f"{tiny_model_dir},hf-random:wav2vec2-tiny"
    code = main(
        ["bench", "--models", models, "--durations", "0.5,1", "--repeats", "2", "--device", "cpu"]
        + ["--dataset", str(ravdess_dir), "--output", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    for column in ("params (M)", "load (s)", "p50 0.5 s (s)", "p95 1 s (s)", "RTF (1 s)", "peak RSS (MB)"):
        assert column in header
    assert "peak GPU (MB)" in header and "accuracy" in header and "weighted F1" in header
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == 2 and "hf-random:wav2vec2-tiny (random weights)" in rows[1]

    data = json.loads(out.read_text("utf-8"))
    tiny, peer = data["models"]
    assert tiny["kind"] == "emotion2vec" and peer["kind"] == "hf"
    for m in (tiny, peer):
        assert m["ok"] and m["random_weights"] and m["peak_gpu_mb"] is None
        assert [lat["duration_s"] for lat in m["latency"]] == [0.5, 1.0]
        assert all(0 < lat["min_s"] <= lat["p50_s"] <= lat["p95_s"] for lat in m["latency"])
        assert m["peak_rss_mb"] >= m["rss_after_load_mb"] > 50
        # Shared classes with the 4-class SUPERB ER peer: the fearful clip is left out.
        assert m["evaluated"] == 4 and 0 <= m["accuracy"] <= 1 and 0 <= m["weighted_f1"] <= 1
    assert 0 < peer["parameters"] < 1e6
    assert set(peer["classes"]) == {"neutral", "happy", "angry", "sad"}
    assert len(tiny["classes"]) == 9


@pytest.mark.parametrize(
    "name, cls, low, high",
    [
        ("wav2vec2-base", "Wav2Vec2ForSequenceClassification", 94e6, 96e6),
        ("hubert-large", "HubertForSequenceClassification", 310e6, 320e6),
    ],
)
def test_stand_ins_have_the_real_shapes(name, cls, low, high):
    import torch
    from transformers import AutoModelForAudioClassification

    from emotion2vec_webui.bench.peers import random_config

    with torch.device("meta"):  # shape only: no memory, no random init
        model = AutoModelForAudioClassification.from_config(random_config(name))
    assert type(model).__name__ == cls
    assert low < sum(p.numel() for p in model.parameters()) < high


def test_unreachable_hub_peer_is_a_row_not_a_crash(monkeypatch):
    from emotion2vec_webui.bench.peers import HFPeer
    from emotion2vec_webui.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelUnavailableError, match="hf-random"):
        HFPeer.load("hf:nobody/no-such-model-here", "cpu")
    row = ModelBench("hf:nobody/x", "hf", False, "not cached | unreachable")
    table = markdown_table([row], [3.0], with_accuracy=False)
    assert "unavailable: not cached / unreachable" in table


def test_accuracy_uses_the_shared_classes_only():
    a = ModelBench("a", "emotion2vec", True, classes=["angry", "happy", "neutral", "sad", "fearful"])
    b = ModelBench("b", "hf", True, classes=["angry", "happy", "neutral", "sad"])
    refs = ["happy", "sad", "fearful"]
    a = ModelBench(**{**a.__dict__, "item_scores": [{"happy": 0.2, "fearful": 0.7}, {"sad": 0.9}, {"fearful": 1.0}]})
    b = ModelBench(**{**b.__dict__, "item_scores": [{"happy": 0.1, "sad": 0.6}, {"sad": 0.9}, {"sad": 1.0}]})
    sa, sb = score_dataset([a, b], refs)
    assert (sa.evaluated, sa.accuracy) == (2, 1.0)  # "fearful" is not shared: argmax among shared → happy
    assert (sb.evaluated, sb.accuracy) == (2, 0.5)


def test_durations_are_checked():
    assert parse_durations("3,10,30") == [3.0, 10.0, 30.0]
    for bad in ("", "x", "0,3", "3,1000"):
        with pytest.raises(E2VError):
            parse_durations(bad)
