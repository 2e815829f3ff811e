"""Speech segments while the audio arrives: silero-vad frame by frame, and :func:`vad.speech_spans` as it goes.

:mod:`engine.vad` finds the speech in a whole recording; a stream needs the
same answer piece by piece, before the recording ends. :class:`SpeechTracker`
takes 16 kHz samples in chunks of any size, runs silero's ONNX graph
(:mod:`model.silero_onnx`) on each complete 32 ms frame with the LSTM state
carried from the previous call, and drives silero's probabilities → spans
state machine (the one :func:`vad.speech_spans` runs over a whole list)
one frame at a time. Its spans are the offline spans of the same audio: a
pause must last ``min_silence`` (0.3 s) to end a span, more than twice the
padding, so every span gets exactly ``pad`` on each side (clamped at 0 and
at the end of the audio) and nothing later changes an edge already told.

What it tells, as :class:`SpeechEvent` items:

* ``start`` once a span is sure to be kept: it has lasted ``min_speech``
  (0.25 s) and silence has not yet ended it. Its ``start`` is final.
* ``end`` once ``min_silence`` of silence ended it (``end`` = where the
  silence began, plus ``pad``), or at :meth:`SpeechTracker.flush`.
* A span that reaches ``max_segment_s`` is ended there and a new one starts
  at the same sample (no look-ahead: the offline path splits at the
  quietest point instead, which a stream cannot know yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.engine.vad import MIN_SILENCE_S, MIN_SPEECH_S, PAD_S, THRESHOLD


@dataclass(frozen=True)
class SpeechEvent:
    kind: str  # "start" or "end"
    start: int  # the span's first sample (16 kHz)
    end: int | None = None  # its end (exclusive) for "end"


class SpeechTracker:
    """One signal's speech spans, told as the audio arrives (see the module docstring).

    Args:
        threshold: speech probability above which a frame is speech.
        min_speech_s, min_silence_s, pad_s: as :func:`vad.speech_segments`.
        max_segment_s: a span this long is ended and the next one starts (None: no cap).
        graph: a silero ONNX graph file (None: the installed one).

    Raises:
        E2VError: ``bad_request`` when silero-vad's graph or onnxruntime is missing.
    """

    def __init__(
        self,
        threshold: float = THRESHOLD,
        min_speech_s: float = MIN_SPEECH_S,
        min_silence_s: float = MIN_SILENCE_S,
        pad_s: float = PAD_S,
        max_segment_s: float | None = None,
        graph=None,
    ) -> None:
        from emotion2vec_webui.errors import E2VError
        from emotion2vec_webui.model import silero_onnx

        graph = graph or silero_onnx.graph_file()
        if graph is None:
            raise E2VError("bad_request", silero_onnx.MISSING)
        self._session = silero_onnx._session(str(graph))  # cached per graph file, shared by every stream
        self._sequence = "h" in {i.name for i in self._session.get_inputs()}
        self.frame, self.context = silero_onnx.FRAME, silero_onnx.CONTEXT
        self.threshold, self.negative = threshold, max(threshold - 0.15, 0.01)
        # sample counts as vad.speech_segments computes them (whole milliseconds)
        self.min_speech = int(min_speech_s * 1000) * SAMPLE_RATE / 1000
        self.min_silence = int(min_silence_s * 1000) * SAMPLE_RATE / 1000
        self.pad = int(pad_s * 1000) * SAMPLE_RATE // 1000
        self.max_len = int(max_segment_s * SAMPLE_RATE) if max_segment_s else None
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._state = np.zeros((2, 1, 128), np.float32)
        self._tail = np.zeros(self.context, np.float32)  # the last CONTEXT samples before the next frame
        self._pending = np.zeros(0, np.float32)  # samples not yet a whole frame
        self.frames = 0  # frames analysed
        self.samples = 0  # samples pushed
        self.speaking = False
        self.told = False  # the open span's start was told
        self.start = 0  # the open span's first speech frame (unpadded)
        self.silent_from = 0  # where the silence that may end the open span began (0: none)
        self.told_start = 0  # the padded start that was told

    def push(self, samples: np.ndarray) -> list[SpeechEvent]:
        """Take the next samples (16 kHz mono float32); the events they complete, in order."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.samples += len(samples)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(data) // self.frame * self.frame
        self._pending = data[whole:].copy()
        return self._frames(data[:whole]) if whole else []

    def flush(self) -> list[SpeechEvent]:
        """The audio has ended: the last partial frame (zero-padded, as offline) and the open span's end."""
        events: list[SpeechEvent] = []
        if len(self._pending):
            padded = np.zeros(self.frame, np.float32)
            padded[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
            events += self._frames(padded)
        total = self.samples
        if self.speaking and (self.told or total - self.start > self.min_speech):
            events += self._open()
            events.append(SpeechEvent("end", self.told_start, total))
        self.speaking = self.told = False
        return events

    # -- internals -------------------------------------------------------------------------------
    def _probabilities(self, data: np.ndarray) -> np.ndarray:
        count = len(data) // self.frame
        padded = np.concatenate([self._tail, data])
        self._tail = padded[-self.context :].copy()
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.frame + self.context)[:: self.frame][:count]
        frames = np.ascontiguousarray(frames)
        if self._sequence:
            probs, self._h, self._c = self._session.run(None, {"input": frames, "h": self._h, "c": self._c})
            return np.asarray(probs, np.float32).reshape(-1)
        out = np.zeros(count, np.float32)
        rate = np.array(SAMPLE_RATE, np.int64)
        for i, frame in enumerate(frames):
            prob, self._state = self._session.run(None, {"input": frame[None], "state": self._state, "sr": rate})
            out[i] = np.asarray(prob).reshape(-1)[0]
        return out

    def _open(self) -> list[SpeechEvent]:
        """The open span's start event, when it is not told yet."""
        if self.told:
            return []
        self.told = True
        self.told_start = max(0, self.start - self.pad)
        return [SpeechEvent("start", self.told_start)]

    def _frames(self, data: np.ndarray) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        for p in self._probabilities(data).tolist():
            at = self.frames * self.frame
            self.frames += 1
            if self.speaking and self.max_len and self.told and at - self.told_start >= self.max_len:
                events.append(SpeechEvent("end", self.told_start, at))  # a cap, not a pause: no padding
                self.start, self.told_start, self.silent_from = at, at, 0
                events.append(SpeechEvent("start", at))
            if p >= self.threshold:
                self.silent_from = 0
                if not self.speaking:
                    self.speaking, self.start, self.told = True, at, False
            elif self.speaking and p < self.negative:
                self.silent_from = self.silent_from or at
                if at - self.silent_from >= self.min_silence:
                    if self.told or self.silent_from - self.start > self.min_speech:
                        events += self._open()
                        events.append(SpeechEvent("end", self.told_start, self.silent_from + self.pad))
                    self.speaking, self.told, self.silent_from = False, False, 0
                    continue
            # sure to be kept once it has lasted min_speech up to a later frame than this one
            if self.speaking and not self.told and (self.silent_from or at + self.frame) - self.start > self.min_speech:
                events += self._open()
        return events
