"""Messages a user reads are "English / 中文": error messages of the faces and runs, and run.log's conversation lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.errors import E2VError

CJK = re.compile(r"[\u3400-\u9fff]")
PACKAGE = Path(__file__).resolve().parents[1] / "emotion2vec_webui"
MESSAGE_CALLS = ("E2VError", "error_view", "error_card_html", "error_response")  # (code, message, …)


def _english_only_messages(folder: Path) -> list[str]:
    """Calls in ``folder`` whose message is written out in the call (a literal or f-string) with no Chinese."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        source = path.read_text("utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            message = node.args[1]
            if name in MESSAGE_CALLS and isinstance(message, ast.Constant | ast.JoinedStr | ast.BinOp):
                text = ast.get_source_segment(source, message) or ""
                if not CJK.search(text):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text[:80]}")
    return found


@pytest.mark.parametrize("layer", ["ui", "serving", "runs"])
def test_written_out_error_messages_have_a_chinese_half(layer):
    assert _english_only_messages(PACKAGE / layer) == []


def _check_line(line: str) -> None:
    english, sep, chinese = line.partition(" / ")
    assert sep and re.search(r"[A-Za-z]{3}", english) and CJK.search(chinese), f"not 'English / 中文': {line}"
    assert not CJK.search(english), f"Chinese before ' / ': {line}"


def test_ui_errors_keep_the_english_first(tmp_path):
    from emotion2vec_webui.ui import handlers

    view = handlers.view_run(tmp_path, "outputs_20990101_000000_000000_nope")
    assert view.error_code == "not_found" and "No run named" in view.card_html and "没有名为" in view.card_html
    for call in (
        lambda: handlers.recognize_api(None, "clip.wav", "bogus"),
        lambda: handlers.recognize_api(None, "clip.wav", "frame", True, "bogus"),
        lambda: handlers.recognize_api(None, None),
    ):
        with pytest.raises(E2VError) as info:
            call()
        _check_line(info.value.message)
    view = handlers.recognize(None, "clip.wav", "bogus", False)
    assert view.error_code == "bad_request" and "granularity must be" in view.card_html and "必须是" in view.card_html


class _Engine:
    info = SimpleNamespace(device="cpu")

    def recognize(self, chunk, granularity, embedding, window_s=30.0):
        from emotion2vec_webui.labels import EMOTIONS

        scores = dict.fromkeys(EMOTIONS, 1 / len(EMOTIONS))
        return SimpleNamespace(emotion=EMOTIONS[0], confidence=scores[EMOTIONS[0]], scores=scores)


def test_conversation_run_log_lines_are_bilingual(monkeypatch):
    from emotion2vec_webui.engine.conversation import ConversationOptions, analyse_conversation
    from emotion2vec_webui.model import conversation_models
    from emotion2vec_webui.runs import conversation_run
    from emotion2vec_webui.runs.run_log import RunLog

    runlog = RunLog("r1")
    a, b = np.zeros(16000 * 3, np.float32), np.zeros(16000 * 3, np.float32)
    analyse_conversation(_Engine(), a, ConversationOptions("channels"), channels=[a, b], runlog=runlog,
                         vad=lambda sig: [(0.5, 2.0)] if sig is a else [(2.2, 2.8)])  # fmt: skip
    assert "conversation (channels): 2 speaker(s), 2 turn(s); vad " in runlog.lines[-1]

    # converse(): the model lines and the too-many-channels warning (models and analysis faked)
    fake = SimpleNamespace(resolved=SimpleNamespace(path=Path("/m/campplus"), hub="modelscope"), random_weights=True)
    monkeypatch.setattr(conversation_models, "speaker_model", lambda *args: fake)
    monkeypatch.setattr(conversation_models, "asr_model", lambda *args: fake)
    monkeypatch.setattr(conversation_run, "analyse_conversation", lambda *args, **kwargs: None)
    settings = SimpleNamespace(speaker_model="s", asr_model="a", hub="modelscope", window_s=30.0, frame_smoothing_s=0.5)
    for speakers, channels in (("auto", 1), ("channels", 12)):
        options = SimpleNamespace(speakers=speakers, num_speakers=None, transcribe=True, asr_model=None,
                                  granularity="utterance")
        flow = SimpleNamespace(settings=settings, options=options, channel_waveforms=None, runlog=runlog)
        conversation_run.converse(flow, SimpleNamespace(waveform=a, original_channels=channels), _Engine())
    text = "\n".join(line.split(" ", 1)[1] for line in runlog.lines)
    for english in ("speaker model: campplus (modelscope) — random weights", "ASR model: campplus",
                    "warning: 12 channels; the first 8 are speakers"):  # fmt: skip
        assert english in text, english
    for line in text.splitlines():
        _check_line(line)
