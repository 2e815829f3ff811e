"""The Train tab's ZIP uploads leave nothing behind under ``outputs/.train-uploads``: not after a job, not after a bad upload."""

from __future__ import annotations

import zipfile

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.ui.labelled_sets import UPLOADS
from emotion2vec_webui.ui.train_tab import run_training
from tests.head_data import make_set, started_service


@pytest.fixture(scope="module")
def service(engine, tiny_model_dir, tmp_path_factory):
    with started_service(engine, tiny_model_dir, tmp_path_factory.mktemp("train_tab")) as service:
        yield service


def leftovers(service) -> list:
    folder = service.settings.output_dir / UPLOADS
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_trained_upload_is_removed(service, tmp_path):
    data = make_set(tmp_path / "set", per_class=4, seed=9)
    upload = tmp_path / "set.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        for wav in sorted(data.rglob("*.wav")):
            zf.write(wav, wav.relative_to(data).as_posix())
    report, image, _ = run_training(service, "", str(upload), "zipped", "auto", "", "", False)
    assert 'id="train_cv_accuracy"' in report and image is not None
    assert leftovers(service) == []


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_a_refused_upload_is_removed(service, tmp_path, content):
    upload = tmp_path / "bad.zip"
    upload.write_bytes(content)
    with pytest.raises(E2VError) as refused:
        run_training(service, "", str(upload), "refused", "auto", "", "", False)
    assert refused.value.code == "bad_request"
    assert leftovers(service) == []


def test_heads_table_lists_every_head_with_percentages(tmp_path):
    """Issue 31.7: figures as percentages (not 0.369048); a head without report.json shows dashes, not None."""
    import json
    from types import SimpleNamespace

    from emotion2vec_webui.ui.train_tab import HEADS_HEADERS, delete_choices, heads_table
    from tests.head_data import write_head

    write_head(tmp_path / "with_report", checkpoint="0" * 64)
    (tmp_path / "with_report" / "report.json").write_text(json.dumps({"n": 42, "cv_accuracy": 0.369048, "cv_f1_macro": 1}))
    write_head(tmp_path / "bare", checkpoint="0" * 64, labels=("a", "b"))
    settings = SimpleNamespace(heads_dir=tmp_path)
    rows = heads_table(settings)
    assert [r[:5] for r in rows] == [["bare", "a, b", "—", "—", "—"], ["with_report", "calm, tense, upbeat", 42, "36.9%", "100.0%"]]
    assert all(len(r) == len(HEADS_HEADERS) for r in rows)
    assert delete_choices(settings) == ["bare", "with_report"]
