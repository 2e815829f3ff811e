"""Every visible string of every tab speaks both languages (the rule), in a Chinese and an English browser.

The rule: every string is bilingual side by side ("中文 / English") whatever
the browser's language: ours through ``labels.bilingual``, Gradio's own
(upload prompt, Record/Stop, the footer, the status tracker) through the
custom translations of ``ui/gradio_strings.py``. So with either locale no
visible text may be English only. A text counts as bilingual when it, or a
short enclosing element (a row, a label), has Chinese characters. Brand
names, units, code and numbers are allowed on their own; nothing else is
(a fresh server shows no user data: file names, run ids).

What a screen reader reads and a tooltip shows counts too: the ``aria-label``
and ``title`` of every visible element, each on its own (no enclosing text
excuses it) — Gradio's "Record audio", "Copy table data", "Fullscreen" …
included (``ui/gradio_strings.py``).
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

CJK = re.compile(r"[\u3400-\u9fff]")
# Words that are the same in both languages: names, units, formats, identifiers.
ALLOWED = re.compile(
    r"(?i)https?://\S+|\b(?:emotion2vec\+?|funasr|gradio|modelscope|hugging ?face|hf|api|rest|cli|csv|zip|json|url|vad|"
    r"gpu|cpu|cuda|onnx|rss|pid|mb|gib|gb|kb|ms|s|hz|khz|wav|mp3|flac|http|https|e2v_\w+|utf-8|fp32|fp16|bf16|"
    r"tiny|base|large|ok|id|python|torch|fastapi|numpy|onnxruntime)\b"
)
CONTEXT_CHARS = 320  # an enclosing element longer than this is a section, not the string's own label
# Texts that came from users (file names, run ids) would be listed here; a fresh server shows none.
USER_DATA: frozenset[str] = frozenset()

VISIBLE_TEXT_JS = """
(limit) => {
  const out = [];
  const seen = new Set();
  const visible = (el) => el && el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })
    && el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().height > 0;
  const context = (el) => {
    let best = "";
    for (let a = el, i = 0; a && i < 4; a = a.parentElement, i++) {
      const t = (a.innerText || "").trim();
      if (t.length > limit) break;
      best = t;
    }
    return best;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || el.closest("script,style,noscript,code,pre,[aria-hidden=true]") || !visible(el)) continue;
    const key = text + "|" + context(el);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ text, context: context(el) });
  }
  for (const el of document.querySelectorAll("input[placeholder],textarea[placeholder]")) {
    if (visible(el) && el.placeholder.trim()) out.push({ text: el.placeholder.trim(), context: el.placeholder });
  }
  // aria-labels and tooltips: read out or shown on their own, so their own text is their only context
  for (const el of document.querySelectorAll("[aria-label],[title]")) {
    if (el.closest("[aria-hidden=true]") || !visible(el)) continue;
    for (const attr of ["aria-label", "title"]) {
      const value = (el.getAttribute(attr) || "").trim();
      if (value) out.push({ text: value, context: value, attribute: attr });
    }
  }
  return out;
}
"""


def english_only(items: list[dict], allowed: set[str] = frozenset()) -> list[str]:
    """The texts with English words and no Chinese in them or in their short context."""
    bad = []
    for item in items:
        text = item["text"]
        if text in allowed or CJK.search(text) or CJK.search(item["context"]):
            continue
        words = re.sub(r"\S+\.\w{2,4}\b", " ", ALLOWED.sub(" ", text))  # names, units, file names
        if re.search(r"[A-Za-z]{2,}", words):
            bad.append(text)
    return sorted(set(bad))


def test_the_check_finds_english_only_text():
    """The filter itself: English-only text is caught (the rule can fail), bilingual text and names pass."""
    items = [
        {"text": "Drop Audio Here", "context": "Drop Audio Here - or - Click to Upload"},
        {"text": "common.complete", "context": ""},
        {"text": "将音频拖放到此处 / Drop Audio Here", "context": ""},
        {"text": "Record", "context": "录制 / Record"},
        {"text": "https://example.com/clip.mp3", "context": ""},
        {"text": "16 kHz · 320 ms · JSON", "context": ""},
    ]
    assert english_only(items) == ["Drop Audio Here", "common.complete"]
    # an attribute is its own context: "Fullscreen" is caught even on a bilingual toolbar
    attributes = [{"text": "Fullscreen", "context": "Fullscreen", "attribute": "title"},
                  {"text": "全屏 / Fullscreen", "context": "全屏 / Fullscreen", "attribute": "aria-label"}]  # fmt: skip
    assert english_only(attributes) == ["Fullscreen"]


@pytest.fixture(scope="module")
def server(shared_server):
    """A server in the default configuration (tests/conftest.py's shared_server): no input or heads folder,
    no conversation models (with them, the Batch and Train tabs show folder paths and head names). It must
    show no user data: when other modules already wrote runs on the shared one, a process of its own."""
    srv = shared_server()
    if any(srv.outputs.glob("*/result.json")) or any(srv.outputs.glob("batch_*")):
        srv = shared_server(name="bilingual")
    return srv


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_every_tab_is_bilingual(server, browser, locale):
    context = browser.new_context(locale=locale, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(server.url)
        page.locator("#model_status [data-state='ready']").wait_for()
        tabs = page.get_by_role("tab")
        names = [tabs.nth(i).inner_text() for i in range(tabs.count())]
        assert len(names) >= 6
        found: dict[str, list[str]] = {}
        for i, name in enumerate(names):
            tabs.nth(i).click()
            page.wait_for_timeout(800)
            if i == 0:  # an error card too: Recognize with no audio
                page.locator("#run_button").click()
                page.locator("#result_card .e2v-error").wait_for()
            items = page.evaluate(VISIBLE_TEXT_JS, CONTEXT_CHARS)
            assert len(items) > 5, f"no text collected on tab {name}"
            labels = [item for item in items if item.get("attribute")]
            assert labels, f"no aria-label or title collected on tab {name}"  # every tab has some (the footer)
            bad = english_only(items, USER_DATA)
            if bad:
                found[name] = bad
    finally:
        context.close()
    assert not found, f"English-only text with locale {locale}: {found}"


def test_gradios_status_texts_become_bilingual_as_gradio_writes_them(page):
    """The status tracker's English literals ('processing |', 'queue: 1/2 |'), added or rewritten in place."""
    from emotion2vec_webui.ui.gradio_strings import head_html

    page.set_content(f"<html><head>{head_html()}</head><body><div id='t'></div><div id='q'></div></body></html>")
    page.evaluate("document.getElementById('t').append(document.createTextNode('processing |'))")
    page.evaluate("document.getElementById('q').append(document.createTextNode('queue: 1/2 |'))")
    page.wait_for_function("document.getElementById('t').textContent === '处理中 | / processing |'")
    page.wait_for_function("document.getElementById('q').textContent === '排队 1/2 | / queue: 1/2 |'")
    page.evaluate("document.getElementById('q').firstChild.data = 'queue: 2/3 |'")  # as Svelte updates a text node
    page.wait_for_function("document.getElementById('q').textContent === '排队 2/3 | / queue: 2/3 |'")
    assert page.evaluate("document.body.textContent.split(' / ').length") == 3  # each text translated once
