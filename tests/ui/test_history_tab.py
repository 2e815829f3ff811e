"""The History tab's functions (issue 30): batches as one row, expansion, pages, filters, conversations, delete."""

from __future__ import annotations

import re

import pytest

from emotion2vec_webui.runs.catalog.retention import in_use
from emotion2vec_webui.runs.similarity import record_similarity
from emotion2vec_webui.ui import history, history_tab
from tests.catalog_data import conversation, make_batch, write_single

BATCH = "batch_20261201_100100"


@pytest.fixture
def root(tmp_path):
    """25 single runs, a labelled batch of 3 (its runs at the times of runs 0-2: it lists above run 2), a conversation."""
    out = tmp_path / "outputs"
    for i in range(25):
        write_single(out, i, f"clip_{i:02d}.wav")
    make_batch(out, BATCH, 0, ["a.wav", "b.wav", "c.wav"], labels=["sad", "sad", "happy"])
    write_single(out, 30, "call.wav", **conversation())
    return out


def _files(value: dict) -> list[str]:
    return [row[1] for row in value["data"]]


def test_a_batch_is_one_row_that_expands_to_its_runs(root):
    value, state, status = history_tab.render(root, history_tab.new_state())
    assert value["headers"] == list(history.MAIN_COLUMNS) and len(value["data"]) == 20
    files = _files(value)
    assert files[0] == "call.wav" and files[1:4] == ["clip_24.wav", "clip_23.wav", "clip_22.wav"]
    batch_rows = [i for i, (kind, _) in enumerate(state["items"]) if kind == "batch"]
    assert batch_rows == [] and 'data-total="27"' in status  # 25 + conversation + the batch: on page 2
    page2, state2, _ = history_tab.render(root, {**state, "cursors": [None, state["next"]], "page": 1})
    (row,) = [i for i, (kind, _) in enumerate(state2["items"]) if kind == "batch"]
    assert page2["data"][row][1].startswith("▸ 📦 " + BATCH) and page2["data"][row][4].endswith("· 3")
    assert page2["data"][row][3] == "acc 33%"  # its accuracy (1 of 3 right), where a run has its confidence
    assert _files(page2)[row + 1 :] == ["clip_02.wav", "clip_01.wav", "clip_00.wav"] and state2["next"] is None
    opened, state3, _ = history_tab.render(root, {**state2, "expanded": BATCH})
    assert _files(opened)[row : row + 4] == [f"▾ 📦 {BATCH} · /data/{BATCH}", "↳ c.wav", "↳ b.wav", "↳ a.wav"]
    assert [k for k, _ in state3["items"][row + 1 : row + 4]] == ["run"] * 3
    assert state3["items"][row + 1][1] == f"{BATCH}~outputs_20261201_100002"
    panel = history.batch_panel_html(root, BATCH)
    assert 'id="history_batch_summary"' in panel and 'id="history_confusion"' in panel
    assert "33.3%" in panel and "已完成 / done" in panel


def test_the_batch_panel_shows_the_heads_label_sets_and_abstentions_figures(root):
    """metrics.json's "head", "label_set" and "abstention" blocks (issue 31) reach History's batch view."""
    import json

    path = root / BATCH / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["head"] = {"name": "calls", "accuracy": 2 / 3, "ua": 0.75, "macro_f1": 0.6, "weighted_f1": 0.625,
                       "labels": ["calm", "tense"], "confusion": [[1, 0], [1, 1]]}  # fmt: skip
    metrics["label_set"] = {"name": "iemocap4", "metrics": {"ua": 0.5, "accuracy": 1 / 3, "macro_f1": 0.25}}
    metrics["abstention"] = {"nine": {"coverage": 0.5, "accuracy_answered": 1.0}}
    path.write_text(json.dumps(metrics))
    panel = history.batch_panel_html(root, BATCH)
    facts = dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", panel))
    assert facts["分类头 calls：准确率 / UA / Head calls: accuracy / UA"] == "66.7% / 75.0%"
    assert facts["分类头 calls：宏 / 加权 F1 / Head calls: macro / weighted F1"] == "60.0% / 62.5%"
    assert facts["标签集 iemocap4：UA / WA / 宏 F1 / Label set iemocap4: UA / WA / macro F1"] == "50.0% / 33.3% / 25.0%"
    assert facts["九类 / Nine classes: 覆盖率 / 作答准确率 / coverage / accuracy answered"] == "50.0% / 100.0%"
    head_matrix = re.search(r'id="history_head_confusion">(.*?)</table>', panel).group(1)
    assert re.findall(r"<td>(\d+)</td>", head_matrix) == ["1", "0", "1", "1"] and "<th>tense</th>" in head_matrix
    assert 'id="history_confusion"' in panel  # the nine classes' matrix stays


def test_secondary_columns_on_demand_and_widths(root):
    value, state, _ = history_tab.render(root, history_tab.new_state(columns=["run_id", "speakers", "nope"]))
    assert value["headers"] == [*history.MAIN_COLUMNS, "说话人 / speakers", "运行 / run"]
    assert value["data"][0][5:] == ["left, right", state["items"][0][1]]
    for n in (5, 7, 12):
        widths = history_tab.column_widths(n)
        assert len(widths) == n and abs(sum(float(w[:-1]) for w in widths) - 100) < 0.5


def test_filters_search_and_bad_values(root):
    def files(**filters) -> list[str]:
        value, _, status = history_tab.render(root, history_tab.new_state(filters))
        assert value is not None, status
        return _files(value)

    assert files(q="CLIP_1") == [f"clip_{i}.wav" for i in range(19, 9, -1)]
    assert set(files(q="clip_2", emotion="happy")) == {"clip_21.wav", "clip_23.wav"}
    assert files(kind="conversation") == ["call.wav"] and files(speaker="Right") == ["call.wav"]
    assert files(q="b.wav") == [f"▸ 📦 {BATCH} · /data/{BATCH}"]  # a batch with a matching run: one row
    assert files(batch=BATCH) == ["c.wav", "b.wav", "a.wav"]  # filtered by batch: its runs, paged
    assert files(q="nothing-like-this") == ["没有匹配的运行 / no matching runs"]
    value, state, status = history_tab.render(root, history_tab.new_state({"emotion": "joy"}))
    assert value is None and 'data-error-code="bad_request"' in status
    value, _, status = history_tab.render(root, history_tab.new_state({"since": "not a date"}))
    assert value is None and "bad_request" in status


def test_kept_similarity_comparisons_are_a_type(root):
    clip = {"confidence": 0.5, "duration_s": 1.0}
    record = record_similarity(root, {
        "cosine": 0.97, "scores_similarity": 0.4, "scores_cosine": 0.6, "same_emotion": False, "verdict": "v",
        "verdict_zh": "v", "meaning": "m", "meaning_zh": "m",
        "a": {**clip, "source_name": "x.wav", "emotion": "happy", "scores": {"happy": 0.5}},
        "b": {**clip, "source_name": "y.wav", "emotion": "sad", "scores": {"sad": 0.5}}})  # fmt: skip
    value, state, _ = history_tab.render(root, history_tab.new_state({"kind": "similarity"}))
    assert _files(value) == ["x.wav ↔ y.wav"] and state["items"] == [["similarity", record]]
    view, conv = history.open_run(root, record)
    assert view.error_code is None and conv == "" and "0.9700" in view.card_html


def test_a_conversation_reopens_with_lanes_transcript_and_player(root):
    _, state, _ = history_tab.render(root, history_tab.new_state())
    kind, run_id = state["items"][0]
    view, conv = history.open_run(root, run_id)
    assert kind == "run" and view.error_code is None and view.result["speakers"]
    assert conv.count('class="e2v-conv-lane" data-speaker=') == 2
    assert len(re.findall(r'class="e2v-conv-turn e2v-conv-item"', conv)) == 5 and "turn 4 words" in conv
    assert '<audio controls' in conv and "processed_audio.wav" in conv and "transcript.vtt" in conv
    single_view, none = history.open_run(root, state["items"][1][1])
    assert none == "" and single_view.error_code is None


def test_delete_asks_then_removes_runs_and_batches(root):
    _, state, _ = history_tab.render(root, history_tab.new_state())
    kind, run_id = state["items"][1]
    question = history.confirm_html(kind, run_id)
    assert run_id in question and "删除" in question and "Delete" in question
    with in_use(root / run_id):  # being read elsewhere (a REST detail, another tab): refused, said so
        card = history.delete(root, kind, run_id)
    assert 'data-error-code="run_busy"' in card and "In use right now" in card and (root / run_id).is_dir()
    assert 'id="history_deleted"' in history.delete(root, kind, run_id) and not (root / run_id).exists()
    assert "not_found" in history.delete(root, kind, run_id)
    assert "bad_request" in history.delete(root, "similarity", "x")
    note = history.delete(root, "batch", BATCH)
    assert "3" in note and not (root / BATCH).exists()
    value, _, _ = history_tab.render(root, history_tab.new_state({"q": "b.wav"}))
    assert _files(value) == ["没有匹配的运行 / no matching runs"]
