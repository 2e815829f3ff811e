"""run.log speaks both languages: every line is "English / 中文", and the figures scripts grep stay in English."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

CJK = re.compile(r"[\u3400-\u9fff]")
STAMP = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")


def _check_bilingual(log_text: str) -> list[str]:
    lines = log_text.splitlines()
    assert lines
    for line in lines:
        assert STAMP.match(line), line
        english, sep, chinese = line[13:].partition(" / ")
        assert sep and re.search(r"[A-Za-z]{3}", english) and CJK.search(chinese), f"not 'English / 中文': {line}"
        assert not CJK.search(english), f"Chinese before ' / ': {line}"
    return lines


def test_every_line_is_english_then_chinese(engine, settings, tmp_path):
    # stereo 44.1 kHz over full scale: the resample line and a decoder warning too; a long clip in windows
    loud = tone(5.0, 44100, channels=2) * 6.0  # peaks near 1.8: a float wav over full scale
    clip = write_audio(tmp_path / "loud.wav", loud, 44100, "wavf32")
    settings = dataclasses.replace(settings, window_s=2.0)
    out = Recognition(settings, RecognizeOptions("frame", True)).run(clip, lambda fn: fn(engine))
    lines = _check_bilingual((out.run.path / "run.log").read_text("utf-8"))
    text = "\n".join(lines)
    for english in ("decoded loud.wav", "mixed to mono and resampled 44100 → 16000 Hz", "warning / 警告: samples",
                    "model: ", "inference: ", "long audio: analysed in", "timeline: ", "result: ",
                    "processing time "):  # fmt: skip
        assert english in text, english
    assert re.search(r"in [\d.]+ ms \(([\d.]+) ms with the worker round trip\)", text)  # what batch tests parse
    assert out.log_text.splitlines()[-1].split(" ", 1)[1].startswith(f"wrote {out.run.run_id} / 已写入")


def test_vad_and_channel_lines_are_bilingual(engine, settings, tmp_path):
    stereo = np.concatenate([tone(3.0, 16000, channels=2), np.zeros((16000, 2), np.float32)])
    clip = write_audio(tmp_path / "two.wav", stereo.astype(np.float32), 16000, "wav")
    out = Recognition(settings, RecognizeOptions("utterance", False, "vad", channels="left")).run(clip, lambda fn: fn(engine))
    lines = _check_bilingual(out.log_text)
    assert any("took audio stream" in line for line in lines)
    assert any("speech segments (silero-vad)" in line for line in lines)
