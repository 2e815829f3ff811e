"""The Live tab: stream the microphone, classify a rolling window, grow a timeline; Stop writes a run.

The browser sends short chunks (Gradio 6 under Chromium: ``(48000, int16
array)`` of about 0.1 s each, whatever ``stream_every`` says), so we buffer
the raw chunks at their own rate and resample on the server with soxr: the
last ``WINDOW_S`` seconds for each tick, and the whole recording once at
Stop. Every ``TICK_S`` seconds of received audio the last window is
classified through the service's inference queue (no run folder per tick).
Stop classifies the whole recording at frame granularity and writes a normal
run folder (result.json, processed_audio.wav, embedding.npy, run.log).

:class:`LiveSession` and the two handlers are plain Python, so tests can drive
them without a browser; :func:`build_live_tab` wires them to Gradio.
"""

from __future__ import annotations

import logging
import threading
from html import escape

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.timeline import run_timeline_html, timeline_component, timeline_html

log = logging.getLogger(__name__)

WINDOW_S = 3.0  # the rolling window classified at each tick
TICK_S = 1.0  # seconds of received audio between two ticks
MIN_WINDOW_S = 0.5  # no tick before this much audio has arrived
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
        self.ticks: list[np.ndarray] = []  # [9] scores per tick, in time order
        self.next_tick_s = TICK_S
        self.truncated = False
        self.lock = threading.Lock()

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate if self.rate else 0.0

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

    def _resampled(self, raw: np.ndarray) -> np.ndarray:
        import soxr

        if self.rate == SAMPLE_RATE:
            return raw.astype(np.float32)
        return soxr.resample(raw, self.rate, SAMPLE_RATE, quality="HQ").astype(np.float32)

    def tail(self, seconds: float = WINDOW_S) -> np.ndarray:
        """The last ``seconds`` of audio at 16 kHz."""
        with self.lock:
            need = int(seconds * self.rate) + self.rate // 10  # a little more: soxr's edge settles
            picked, have = [], 0
            for chunk in reversed(self.chunks):
                picked.append(chunk)
                have += len(chunk)
                if have >= need:
                    break
        raw = np.concatenate(picked[::-1]) if picked else np.zeros(0, np.float32)
        return self._resampled(raw)[-int(seconds * SAMPLE_RATE) :]

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

    def record_tick(self, scores: dict[str, float]) -> None:
        """Store a tick's scores; the next tick is due ``TICK_S`` later (skipping ticks we fell behind on)."""
        self.ticks.append(np.array([scores[k] for k in EMOTIONS], dtype=np.float64))
        self.next_tick_s = (np.floor(self.duration_s / TICK_S) + 1) * TICK_S

    def timeline_result(self) -> dict:
        """The ticks as a result.json-like object for ``ui_charts.timeline_figure`` (one frame per tick)."""
        from emotion2vec_webui.engine.timeline import segments

        scores = np.array(self.ticks) if self.ticks else np.zeros((0, 9))
        duration = len(self.ticks) * TICK_S
        return {
            "frames": {"hop_s": TICK_S, "labels": list(EMOTIONS), "scores": scores.tolist()},
            "segments": segments(scores, duration, hop_s=TICK_S, min_segment_s=TICK_S) if len(scores) else [],
            "audio": {"duration_s": duration},
        }


def status_html(session: LiveSession | None, message: str = "") -> str:
    """The line under the microphone: duration, ticks, latest emotion (``data-ticks`` for automation)."""
    if session is None:
        body = "点击 Record 开始实时识别。Press <b>Record</b> to start; the last 3 s are classified every second."
        return f'<div class="e2v-live-status" data-ticks="0" data-seconds="0">{body}</div>'
    n = len(session.ticks)
    latest = ""
    if n:
        scores = session.ticks[-1]
        key = EMOTIONS[int(np.argmax(scores))]
        latest = (
            f" · 最近 {WINDOW_S:g} 秒 / last {WINDOW_S:g} s: {EMOJI[key]} {escape(ui_text.emotion_name(key))} "
            f"{ui_text.percent(float(scores.max()))}"
        )
    extra = f" · {escape(message)}" if message else ""
    if session.truncated:
        extra += f" · 已达上限 / limit of {session.max_duration_s:g} s reached"
    return (
        f'<div class="e2v-live-status" data-ticks="{n}" data-seconds="{session.duration_s:.1f}">'
        f"🎙️ 录音中 / Listening — {session.duration_s:.1f} s{latest}{extra}</div>"
    )


def on_chunk(service, session: LiveSession | None, chunk) -> tuple[LiveSession, object | None, str]:
    """Handle one streamed chunk: buffer it and, when a tick is due, classify the last window.

    Args:
        service: the server's :class:`service.Service`.
        session: the recording so far (None for the first chunk).
        chunk: ``(rate, samples)`` from ``gr.Audio(streaming=True, type="numpy")``.

    Returns:
        ``(session, figure or None when nothing new to draw, status HTML)``.
    """
    if session is None:
        session = LiveSession(service.settings.max_duration_s)
    if chunk is not None:
        rate, data = chunk
        session.add(rate, data)
    if not session.due() or session.truncated:
        return session, None, status_html(session)
    window = session.tail(WINDOW_S)
    if len(window) < int(MIN_WINDOW_S * SAMPLE_RATE):
        return session, None, status_html(session)
    try:
        result = service.call(lambda engine: engine.recognize(window, "utterance", False))
    except E2VError as exc:
        session.next_tick_s = session.duration_s + TICK_S  # retry a second later
        return session, None, status_html(session, f"{exc.message} [{exc.code}]")
    session.record_tick(result.scores)
    return session, timeline_html(session.timeline_result(), live=True), status_html(session)


def on_stop(service, session: LiveSession | None):
    """Classify the whole recording at frame granularity and write its run folder.

    Returns:
        A :class:`ui_handlers.RunView` (an error card when there is nothing to classify).
    """
    from emotion2vec_webui.audio.decode import DecodedAudio
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
    from emotion2vec_webui.ui.handlers import error_view, view_run

    if session is None or session.samples == 0:
        return error_view("audio_empty", "没有收到麦克风音频。No microphone audio was received.")
    wave = session.whole()
    if len(wave) < max(400, int(service.settings.min_duration_s * SAMPLE_RATE)):
        return error_view("audio_too_short", f"The recording is only {len(wave) / SAMPLE_RATE:.2f} s long.")
    warnings = (f"the live recording was cut at {session.max_duration_s:g} s (E2V_MAX_DURATION_S)",)
    decoded = DecodedAudio(
        waveform=wave,
        sample_rate=SAMPLE_RATE,
        original_sample_rate=session.rate or SAMPLE_RATE,
        original_channels=1,
        source_name=SOURCE_NAME,
        container="microphone",
        warnings=warnings if session.truncated else (),
    )
    flow = Recognition(service.settings, RecognizeOptions(granularity="frame", extract_embedding=True))
    try:
        outcome = service.call(lambda engine: flow.finish(decoded, engine))
    except E2VError as exc:
        return error_view(exc.code, exc.message)
    return view_run(service.settings.output_dir, outcome.run.run_id, outcome.result, outcome.log_text)


def build_live_tab(service) -> None:
    """The Live tab (call inside ``gr.Blocks``): microphone stream → rolling emotion → run folder at Stop."""
    import gradio as gr

    with gr.Tab(bilingual("Live", "实时"), elem_id="live_tab"):
        gr.Markdown(
            "实时识别：每秒对最近 3 秒的麦克风音频做一次情绪识别；停止后整段录音按帧识别并保存为一次运行。  \n"
            "Live: every second, the last 3 s from the microphone are classified; when you stop, the whole "
            "recording is analysed frame by frame and saved as a normal run."
        )
        state = gr.State(None)
        mic = gr.Audio(
            sources=["microphone"],
            streaming=True,
            type="numpy",
            label=bilingual("Microphone", "麦克风"),
            elem_id="live_audio",
        )
        status = gr.HTML(status_html(None), elem_id="live_status")
        timeline = timeline_component("live_timeline", visible=True)  # ui/timeline.py, grows while recording
        card = gr.HTML(visible=False, elem_id="live_result")
        segments = gr.HTML(visible=False, elem_id="live_segments")
        files = gr.File(
            label=bilingual("Downloads", "下载"),
            file_count="multiple",
            interactive=False,
            visible=False,
            elem_id="live_downloads",
        )
        run_label = gr.Markdown(elem_id="live_run_folder")

        def chunk_event(session, chunk):
            session, fig, html = on_chunk(service, session, chunk)
            return session, (gr.skip() if fig is None else fig), html

        def stop_event(session):
            view = on_stop(service, session)
            fig = run_timeline_html(view.result, view.files, view.run_id) or None
            return (
                None,  # the next recording starts a fresh session
                gr.update(value=view.card_html, visible=True),
                gr.skip() if fig is None else fig,
                gr.update(value=view.segments_html(), visible=view.is_frame),
                gr.update(value=list(view.files) or None, visible=bool(view.files)),
                view.run_label(),
                status_html(None),
            )

        mic.stream(
            chunk_event,
            inputs=[state, mic],
            outputs=[state, timeline, status],
            stream_every=0.5,
            time_limit=int(service.settings.max_duration_s) + 5,
            concurrency_limit=1,  # chunks are buffered in order, and Stop (same queue) comes after them
            concurrency_id="e2v_live",
            show_progress="hidden",
            api_visibility="private",
        )
        mic.stop_recording(
            stop_event,
            inputs=[state],
            outputs=[state, card, timeline, segments, files, run_label, status],
            concurrency_limit=1,
            concurrency_id="e2v_live",
            api_visibility="private",
        )
