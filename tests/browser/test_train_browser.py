"""The Train tab in a real browser: train a head from a server folder, see the confusion matrix,
then pick the head on Recognize and see its labels on the result card."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pages import open_tab, pick, shot
from tests.head_data import LABELS, make_set

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("patient_expect")]


@pytest.fixture(scope="module")
def server(ui_server):
    """The shared UI server (tests/conftest.py: input and heads folders); the training set in a sub-folder of its own.
    No other module trains or saves heads there, so the heads listed are this module's."""
    ui_server.data = make_set(ui_server.inputs / "train_browser_set", per_class=5, seed=2)
    return ui_server


def test_train_tab_then_pick_the_head_on_recognize(server, page, tmp_path):
    open_tab(page, server.url, "Train")
    page.locator("#train_folder textarea, #train_folder input").first.fill(str(server.data))
    page.locator("#train_name textarea, #train_name input").first.fill("ui_head")
    page.click("#train_button")
    done = page.locator("#train_report #train_done[data-head=ui_head]")
    expect(done).to_be_visible()
    rows = done.locator("tr[data-label]")
    expect(rows).to_have_count(3)
    assert sorted(rows.evaluate_all("els => els.map(e => e.dataset.label)")) == sorted(LABELS)
    expect(page.locator("#train_confusion img")).to_be_visible()
    assert (server.root / "heads" / "ui_head" / "confusion_matrix.png").is_file()
    cv = float(page.locator("#train_cv_accuracy").text_content())
    api = httpx.get(server.url + "/api/v1/heads", timeout=30).json()["heads"]
    assert [h["name"] for h in api] == ["ui_head"] and api[0]["cv_accuracy"] == pytest.approx(cv, abs=1e-3)
    shot(page, tmp_path, "train_tab")

    page.get_by_role("tab", name=re.compile("Recognize")).first.click()
    clip = next((server.data / "tone").glob("*.wav"))
    page.locator("#audio_in input[type=file]").set_input_files(str(clip))
    expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()
    pick(page, "#head_pick", "ui_head")
    page.click("#run_button")
    block = page.locator("#result_card .e2v-head-block[data-head=ui_head]")
    expect(block).to_be_visible()
    shown = block.locator(".e2v-hrow").evaluate_all("els => els.map(e => e.dataset.label)")
    assert sorted(shown) == sorted(LABELS)
    expect(page.locator("#result_card .e2v-row")).to_have_count(9)  # the nine classes stay
    shot(page, tmp_path, "recognize_with_head")


def test_train_tab_lists_saved_heads_when_opened_and_deletes_a_listed_one(server, page):
    """Issue 31.7: heads saved before the page opened are listed with their figures as percentages; Delete picks one."""
    import json

    from tests.head_data import write_head

    heads = server.root / "heads"
    for name, n, acc, f1 in (("saved_a", 42, 0.369048, 0.287514), ("saved_b", 30, 0.9, 0.875)):
        write_head(heads / name, checkpoint="0" * 64, labels=("calm", "tense", "upbeat"))
        report = {"n": n, "cv_accuracy": acc, "cv_f1_macro": f1}
        (heads / name / "report.json").write_text(json.dumps(report), "utf-8")

    open_tab(page, server.url, "Train")  # a fresh page: nothing trained in it
    table = page.locator("#train_heads")
    row_a = table.locator("[data-index]").filter(has_text="saved_a")
    expect(row_a).to_have_count(1)
    for figure in ("calm, tense, upbeat", "42", "36.9%", "28.8%"):
        expect(row_a).to_contain_text(figure)
    expect(table.locator("[data-index]").filter(has_text="saved_b")).to_contain_text("90.0%")
    assert "0.369048" not in table.inner_text()

    picker = page.locator("#train_delete_name input")
    picker.click()
    page.get_by_role("option", name=re.compile("saved_a")).first.click()
    page.click("#train_delete")
    expect(table.locator("[data-index]").filter(has_text="saved_a")).to_have_count(0)
    expect(table.locator("[data-index]").filter(has_text="saved_b")).to_have_count(1)
    assert not (heads / "saved_a").exists() and (heads / "saved_b").is_dir()
    (heads / "saved_b").rename(server.root / "saved_b_gone")  # the other test expects only its own head
