"""A regression head where the faces meet it: a live stream refuses it (bilingual ``bad_request``), the Train tab's
heads table marks it, the result card lists its values, ``apply_dimensions`` on one frame equals the utterance."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.engine.dimensions import apply_dimensions
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.stores.head_store import engine_hash, load_head
from tests.head_data import TINY_DIM, write_head


def regression_head(folder, checkpoint: str):
    """A hand-written two-target regression head (format 2) in ``folder``."""
    rng = np.random.default_rng(3)
    write_head(folder, checkpoint, labels=("arousal", "valence"), W1=rng.normal(0, 0.3, (16, 2)), b1=np.zeros(2))
    spec = json.loads((folder / "spec.json").read_text())
    (folder / "spec.json").write_text(json.dumps({**spec, "format": 2, "kind": "regression"}))
    (folder / "report.json").write_text(json.dumps({"n": 40, "cv_ccc": 0.61, "kind": "regression"}))
    return folder


@pytest.fixture
def heads(engine, tmp_path):
    regression_head(tmp_path / "heads" / "dims", engine_hash(engine))
    return tmp_path / "heads"


def test_a_live_stream_refuses_a_regression_head(settings, engine, heads):
    from emotion2vec_webui.runs.live.live_stream import LiveStream
    from emotion2vec_webui.runs.live.stream_options import StreamOptions

    service = SimpleNamespace(settings=dataclasses.replace(settings, heads_dir=heads), engine=engine)
    with pytest.raises(E2VError) as err:
        LiveStream(service, StreamOptions(head="dims"))
    assert err.value.code == "bad_request" and "regression" in err.value.message and "回归" in err.value.message


def test_train_tab_and_card_show_a_regression_head(heads):
    from emotion2vec_webui.ui.text import dimensions_section_html
    from emotion2vec_webui.ui.train_tab import heads_table

    rows = heads_table(SimpleNamespace(heads_dir=heads))
    assert rows[0][0] == "dims" and rows[0][1] == "回归 / regression: arousal, valence" and rows[0][3] == "—"
    head = load_head(heads, "dims")
    block = apply_dimensions(head, np.ones(TINY_DIM), 0.5)
    html = dimensions_section_html(block)
    assert 'data-head="dims"' in html and html.count('data-target="') == 2 and "回归头 / Regression head" in html
    one = apply_dimensions(head, np.ones((1, TINY_DIM)), 0.5)  # one frame: its curve is the utterance value
    assert one["frames"]["values"][0] == pytest.approx(list(block["values"].values()), abs=1e-4)
    assert dimensions_section_html(None) == ""


def test_a_regression_head_is_never_applied_as_a_classifier(heads):
    from emotion2vec_webui.engine.heads import apply_head

    with pytest.raises(E2VError) as err:
        apply_head(load_head(heads, "dims"), np.ones(TINY_DIM), 0.5, 1.0)
    assert err.value.code == "bad_request" and "regression" in err.value.message
