"""Every tooltip (``title``) and ``aria-label`` of the Conversation view speaks both languages (issue 33).

The plain view (a result without a ``summary`` block, as older runs have) and the ASR chip included; the
browser test (tests/browser/test_bilingual.py) reads the same attributes from a live page.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui.conversation_tab import conversation_html
from tests.browser.test_bilingual import english_only


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict] = []

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name in ("title", "aria-label") and value and value.strip():
                self.found.append({"text": value.strip(), "context": value.strip(), "attribute": name})


def _attributes(html: str) -> list[dict]:
    parser = _Attributes()
    parser.feed(html)
    return parser.found


def _result() -> dict:
    scores = dict.fromkeys(EMOTIONS, 1 / 9)
    turns = [
        {"index": 0, "speaker": "left", "start_s": 0.5, "end_s": 2.0, "emotion": "angry", "confidence": 0.6,
         "scores": scores, "text": "hello", "asr_emotion": "happy"},
        {"index": 1, "speaker": "right", "start_s": 2.4, "end_s": 4.0, "emotion": "sad", "confidence": 0.4,
         "scores": scores, "text": "你好", "asr_emotion": "neutral"},
    ]  # fmt: skip
    speakers = [
        {"id": "left", "label": "left", "emotion_share": {"angry": 0.75, "neutral": 0.25}, "speaking_share": 0.5,
         "turns": 1, "dominant_emotion": "angry"},
        {"id": "right", "label": "right", "emotion_share": {"sad": 1.0}, "speaking_share": 0.5, "turns": 1,
         "dominant_emotion": "sad"},
    ]  # fmt: skip
    return {"audio": {"duration_s": 5.0}, "model": {}, "speakers": speakers, "turns": turns}


def test_lane_share_and_asr_tooltips_are_bilingual():
    html = conversation_html(_result(), "x.wav", None, {"result.json": "r.json"})
    found = _attributes(html)
    titles = [a["text"] for a in found if a["attribute"] == "title"]
    # the two lane blocks, the share bars of both speakers (3 emotions), the two ASR chips
    assert sum("点击播放" in t and "click to play" in t for t in titles) == 2, titles
    assert sum(re.fullmatch(r"\S+ (angry|neutral|sad) \d+%", t) is not None for t in titles) == 3, titles
    assert sum("SenseVoice" in t for t in titles) == 2, titles
    assert "ASR: 😊 开心 happy" in html  # the ASR emotion by its two names, not its key
    assert english_only(found) == [], found


def test_the_check_would_catch_an_english_only_tooltip():
    html = conversation_html(_result(), "x.wav")
    before = "语音识别模型（SenseVoice）听出的情绪 / "
    assert before in html
    assert english_only(_attributes(html.replace(before, ""))), "an English-only title must be caught"
