"""The live-analysis core: a recording that grows chunk by chunk, its rolling analysis, and the run it becomes.

Face-neutral (no Gradio, no HTTP): the Live tab (``ui/live_tab.py``) feeds it
the microphone chunks the page streams; any other face can feed it samples.

* :class:`LiveSession` keeps the chunks received so far (float32 mono at the
  source's rate, up to ``E2V_MAX_DURATION_S``) and the scores of the windows
  analysed so far.
* :class:`LiveAnalyzer` is the rolling analysis of one session, in a
  background thread: whenever it is free it classifies the *latest*
  :data:`WINDOW_S` seconds through the service's inference queue, so on a
  slow machine it skips windows, never audio, and the session says how far
  behind it is (``lag_s``, ``skipped``).
* :func:`save_take` classifies the whole recording at frame granularity and
  writes a normal run folder (result.json, processed_audio.wav,
  embedding.npy, run.log): from a file of the whole take when the face has
  one (the page's own recording), else from the session's chunks, with a
  warning that some may be missing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES, SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

log = logging.getLogger(__name__)

WINDOW_S = 3.0  # the rolling window classified at each tick
TICK_S = 1.0  # seconds of received audio between two ticks
MIN_WINDOW_S = 0.5  # no tick before this much audio has arrived
LAG_WARN_S = 2.5  # a face says "behind" when the analysed audio ends this far before the received audio
SOURCE_NAME = "microphone_live.wav"  # result.json audio.source_name of a live recording


class LiveSession:
    """One recording: the raw chunks received so far and the rolling-window scores.

    Args:
        max_duration_s: audio beyond this is not kept (E2V_MAX_DURATION_S).
    """

    def __init__(self, max_duration_s: float = 600.0) -> None:
        self.max_duration_s = max_duration_s
        self.rate: int | None = None  # the browser's sample rate (from the first chunk)
        self.chunks: list[np.ndarray] = []  # float32 mono at `rate`
        self.samples = 0
        self.n_chunks = 0  # chunks received
        self.ticks: list[np.ndarray] = []  # [9] scores per analysed window, in time order
        self.tick_ends: list[float] = []  # where each analysed window ends (s of received audio)
        self.next_tick_s = TICK_S
        self.skipped = 0  # windows not analysed because the analysis was behind
        self.max_lag_s = 0.0  # the largest lag seen (s)
        self.error = ""  # the last analysis error, shown in the status line
        self.truncated = False
        self.lock = threading.Lock()
        self.new_audio = threading.Event()  # set by add(): wakes the analyser
        self.analyzer: LiveAnalyzer | None = None
        self.drawn_ticks = 0  # ticks already drawn on the page
        self.last_path = ""  # the last chunk file read (a chunk sent twice is skipped)

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate if self.rate else 0.0

    @property
    def analysed_s(self) -> float:
        """Where the last analysed window ends (0 before the first)."""
        return self.tick_ends[-1] if self.tick_ends else 0.0

    @property
    def lag_s(self) -> float:
        """How much received audio the rolling analysis has not looked at yet."""
        if self.duration_s < max(TICK_S, MIN_WINDOW_S):
            return 0.0
        return max(0.0, self.duration_s - self.analysed_s)

    def add(self, rate: int, data: np.ndarray) -> None:
        """Append one chunk (``int16`` or float, ``[n]`` or ``[n, channels]``) at ``rate`` Hz."""
        data = np.asarray(data)
        if data.size == 0:
            return
        if np.issubdtype(data.dtype, np.integer):
            mono = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
        else:
            mono = data.astype(np.float32)
        if mono.ndim == 2:
            mono = mono.mean(axis=1, dtype=np.float64).astype(np.float32)
        with self.lock:
            if self.rate is None:
                self.rate = int(rate)
            elif int(rate) != self.rate:  # a device switch mid-stream: bring the chunk to our rate
                import soxr

                mono = soxr.resample(mono, int(rate), self.rate).astype(np.float32)
            room = int(self.max_duration_s * self.rate) - self.samples
            if room <= 0:
                self.truncated = True
                return
            mono = mono[:room]
            self.chunks.append(mono)
            self.samples += len(mono)
            self.n_chunks += 1
        self.new_audio.set()

    def _resampled(self, raw: np.ndarray) -> np.ndarray:
        import soxr

        if self.rate == SAMPLE_RATE:
            return raw.astype(np.float32)
        return soxr.resample(raw, self.rate, SAMPLE_RATE, quality="HQ").astype(np.float32)

    def tail(self, seconds: float = WINDOW_S) -> tuple[np.ndarray, float]:
        """The last ``seconds`` of audio at 16 kHz, and where it ends (s of received audio)."""
        with self.lock:
            end_s = self.duration_s
            need = int(seconds * self.rate) + self.rate // 10  # a little more: soxr's edge settles
            picked, have = [], 0
            for chunk in reversed(self.chunks):
                picked.append(chunk)
                have += len(chunk)
                if have >= need:
                    break
        raw = np.concatenate(picked[::-1]) if picked else np.zeros(0, np.float32)
        return self._resampled(raw)[-int(seconds * SAMPLE_RATE) :], end_s

    def whole(self) -> np.ndarray:
        """The whole recording at 16 kHz, on the 16-bit PCM grid (what processed_audio.wav stores)."""
        from emotion2vec_webui.audio.decode import pcm16_from_float

        with self.lock:
            raw = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        wave = self._resampled(raw)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 1.0:  # soxr overshoot on a clipped input; the model normalises level anyway
            wave = wave / peak
        return (pcm16_from_float(wave).astype(np.float32) / 32768.0).astype(np.float32)

    def due(self) -> bool:
        """Whether enough new audio arrived for the next tick."""
        return self.duration_s >= max(self.next_tick_s, MIN_WINDOW_S)

    def record_tick(self, scores: dict[str, float], end_s: float | None = None) -> None:
        """Store the scores of the window ending at ``end_s``; the next tick is due ``TICK_S`` after it.

        Windows that ended while this one was analysed are skipped (counted in ``skipped``), never queued.
        """
        end_s = self.duration_s if end_s is None else end_s
        with self.lock:
            if self.tick_ends:
                self.skipped += max(0, int(round((end_s - self.tick_ends[-1]) / TICK_S)) - 1)
            self.ticks.append(np.array([scores[k] for k in EMOTIONS], dtype=np.float64))
            self.tick_ends.append(end_s)
            self.next_tick_s = (np.floor(end_s / TICK_S) + 1) * TICK_S

    def timeline_result(self) -> dict:
        """The ticks as a result.json-like object for ``ui_charts.timeline_figure``.

        One frame per ``TICK_S`` of analysed audio; a second the analysis skipped takes the scores of
        the next analysed window (whose ``WINDOW_S`` covered it).
        """
        from emotion2vec_webui.engine.timeline import segments

        with self.lock:
            ticks, ends = list(self.ticks), list(self.tick_ends)
        if ticks:
            n = max(1, int(np.ceil(ends[-1] / TICK_S - 1e-6)))
            grid = (np.arange(n) + 1) * TICK_S
            pick = np.minimum(np.searchsorted(np.array(ends), grid - 1e-6), len(ticks) - 1)
            scores = np.array(ticks)[pick]
        else:
            scores = np.zeros((0, 9))
        duration = len(scores) * TICK_S
        return {
            "frames": {"hop_s": TICK_S, "labels": list(EMOTIONS), "scores": scores.tolist()},
            "segments": segments(scores, duration, hop_s=TICK_S, min_segment_s=TICK_S) if len(scores) else [],
            "audio": {"duration_s": duration},
        }


class LiveAnalyzer(threading.Thread):
    """The rolling analysis of one session, off the chunk handler's path.

    Each round takes the latest window (never an older one), classifies it through the service's
    queue and records it; while a round runs, new audio only piles up in the session's buffer.
    """

    def __init__(self, service, session: LiveSession) -> None:
        super().__init__(name="e2v-live-analysis", daemon=True)
        self.service = service
        self.session = session
        self.stopping = threading.Event()

    def run(self) -> None:
        session = self.session
        while not self.stopping.is_set():
            session.new_audio.wait(timeout=0.25)
            session.new_audio.clear()
            if self.stopping.is_set():
                break
            if not session.due() or session.truncated:
                continue
            window, end_s = session.tail(WINDOW_S)
            if len(window) < int(MIN_WINDOW_S * SAMPLE_RATE):
                continue
            try:  # ahead of every other request; dropped (None) when it went stale: the next round is newer
                result = self.service.live_window(window, client=f"live:{id(session):x}")
                if result is None:
                    continue
            except E2VError as exc:
                session.error = f"{exc.message} [{exc.code}]"
                session.next_tick_s = session.duration_s + TICK_S  # retry a second later
                continue
            except Exception:  # the recording goes on; the log keeps the trace
                log.exception("live analysis failed")
                session.error = "分析出错，录音继续。The analysis failed; recording continues."
                session.next_tick_s = session.duration_s + TICK_S
                continue
            session.error = ""
            session.record_tick(result.scores, end_s)
            session.max_lag_s = max(session.max_lag_s, session.duration_s - end_s)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to end and wait for a round in flight (it holds the inference queue)."""
        self.stopping.set()
        self.session.new_audio.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


def save_take(service, session: LiveSession | None, take_path: str | Path | None = None):
    """Stop the rolling analysis, classify the whole recording at frame granularity and write its run folder.

    Args:
        service: the server's :class:`service.Service`.
        session: the streamed recording (None when no chunk arrived).
        take_path: a file holding the whole take (the page's own recording), or None: what is saved
            when given, since streamed chunks may have gaps.

    Returns:
        The :class:`recognize.RunOutcome`.

    Raises:
        E2VError: ``audio_empty`` / ``audio_too_short`` (nothing to classify), decode and model errors.
    """
    import dataclasses

    from emotion2vec_webui.audio.decode import DecodedAudio
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    if session is not None and session.analyzer is not None:
        session.analyzer.stop()
    flow = Recognition(service.settings, RecognizeOptions(granularity="frame", extract_embedding=True))
    if take_path:
        decoded = flow.decode(Path(take_path), Path(take_path).name)
        decoded = dataclasses.replace(decoded, source_name=SOURCE_NAME, container="microphone")
        outcome = service.call(lambda engine: flow.finish(decoded, engine))
        _log_take(outcome, session)
        return outcome
    if session is None or session.samples == 0:
        raise E2VError("audio_empty", "没有收到麦克风音频。No microphone audio was received.")
    wave = session.whole()
    if len(wave) < max(MIN_MODEL_SAMPLES, int(service.settings.min_duration_s * SAMPLE_RATE)):
        seconds = len(wave) / SAMPLE_RATE
        raise E2VError("audio_too_short", f"录音只有 {seconds:.2f} 秒。The recording is only {seconds:.2f} s long.")
    warnings = ("the page could not record the take itself: saved from the streamed chunks, which may have gaps / "
                "页面未能自行录下本次录音：已由分段上传的音频保存，可能有缺口",)  # fmt: skip
    if session.truncated:
        warnings += (f"the live recording was cut at {session.max_duration_s:g} s (E2V_MAX_DURATION_S) / "
                     f"实时录音在 {session.max_duration_s:g} 秒处被截断（E2V_MAX_DURATION_S）",)  # fmt: skip
    decoded = DecodedAudio(
        waveform=wave,
        sample_rate=SAMPLE_RATE,
        original_sample_rate=session.rate or SAMPLE_RATE,
        original_channels=1,
        source_name=SOURCE_NAME,
        container="microphone",
        warnings=warnings,
    )
    outcome = service.call(lambda engine: flow.finish(decoded, engine))
    _log_take(outcome, session)
    return outcome


def _log_take(outcome, session: LiveSession | None) -> None:
    if session is None:
        log.info("live run %s: no chunk was streamed", outcome.run.run_id)
        return
    log.info(
        "live run %s: %.2f s saved; %.2f s streamed in %d chunks, %d windows analysed, %d skipped, max lag %.1f s",
        outcome.run.run_id,
        float(outcome.result["audio"]["duration_s"]),
        session.duration_s,
        session.n_chunks,
        len(session.ticks),
        session.skipped,
        session.max_lag_s,
    )
