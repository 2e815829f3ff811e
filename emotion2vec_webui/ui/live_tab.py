"""The Live tab: stream the microphone, classify a rolling window, grow a timeline; Stop writes a run.

One concept: a live recording (buffer, background analysis, status, the run
at Stop) and its Gradio wiring; the parts only make sense together.

The browser sends short WAV chunks (Gradio 6 under Chromium: 48 kHz 16-bit
PCM, about 0.1 s each, whatever ``stream_every`` says). While the previous
chunk is still being handled, the page glues the next ones together behind
the *first* chunk's header, whose data size then understates what follows;
Gradio's own numpy reader (pydub) trusts that size and silently drops the
rest, which is how a slow server used to lose most of a recording. So the
component hands us the file path and :func:`read_stream_chunk` reads every
byte after the header. Gradio also keeps only the newest chunk the server has
not taken yet (``/stream/{event_id}`` overwrites ``event.data``), so the chunk
handler must return at once: it only appends the chunk to the session's
buffer and never waits for the model. Even so, a busy server takes chunks
slower than the page sends them and Gradio drops the rest, so the streamed
chunks feed only the rolling analysis; the recording that is saved is made
in the page itself (:data:`TAKE_START_JS`: a ``MediaRecorder`` on the same
microphone, which the browser runs off the page's main thread), uploaded
whole at Stop (:data:`TAKE_STOP_JS`) and decoded like any upload. Only when
the page could not record it (no ``MediaRecorder``) is the run made from the
streamed chunks, with a warning that some may be missing. The rolling analysis runs in a background thread
per session (:class:`LiveAnalyzer`): whenever it is free it classifies the
*latest* ``WINDOW_S`` seconds through the service's inference queue, so on a
slow machine it skips windows, never audio, and the status line says how far
behind it is until it catches up. A ``gr.Timer`` redraws the timeline from
what the analyser found, outside the chunk handler. Stop classifies the whole
recording at frame granularity and writes a normal run folder (result.json,
processed_audio.wav, embedding.npy, run.log).

:class:`LiveSession` and the handlers are plain Python, so tests can drive
them without a browser; :func:`build_live_tab` wires them to Gradio.
"""

from __future__ import annotations

import logging
import struct
import threading
from html import escape
from pathlib import Path

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
LAG_WARN_S = 2.5  # the status says "behind" when the analysed audio ends this far before the received audio
VIEW_POLL_S = 1.0  # how often the page redraws the timeline while recording
SOURCE_NAME = "microphone_live.wav"  # result.json audio.source_name of a live recording

# The page's own recording of the take (see the module docstring). Runs when Gradio's recorder starts.
TAKE_START_JS = """
() => {
  // Fire and forget: Gradio's own recorder must not wait for this one.
  setTimeout(async () => {
  const old = window.__e2vTake;
  if (old && old.recorder && old.recorder.state !== "inactive") { old.recorder.stop(); }
  window.__e2vTake = null;
  window.__e2vTakeSeconds = null;
  if (!window.MediaRecorder || !navigator.mediaDevices) { return; }
  const pick = document.querySelector("#live_audio select");
  const audio = pick && pick.value ? { deviceId: { ideal: pick.value } } : true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio });
    const recorder = new MediaRecorder(stream);
    const take = { recorder, stream, parts: [], t0: performance.now() };
    recorder.ondataavailable = (e) => { if (e.data && e.data.size) take.parts.push(e.data); };
    take.done = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start(1000);
    window.__e2vTake = take;
  } catch (err) {
    console.warn("e2v: the page cannot record the take itself; the streamed chunks will be saved", err);
  }
  }, 0);
}
"""

# At Stop: end the page's recording, upload it, and hand it to the stop handler (None when there is none).
TAKE_STOP_JS = """
async () => {
  const take = window.__e2vTake;
  window.__e2vTake = null;
  if (!take) { return null; }
  window.__e2vTakeSeconds = (performance.now() - take.t0) / 1000;  // how long the take ran (tests read it)
  try {
  if (take.recorder.state !== "inactive") { take.recorder.stop(); }
  await take.done;
  take.stream.getTracks().forEach((t) => t.stop());
  const type = take.recorder.mimeType || "audio/webm";
  const blob = new Blob(take.parts, { type });
  const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
  const form = new FormData();
  form.append("files", new File([blob], "microphone_live." + ext, { type }));
  const root = (window.gradio_config && window.gradio_config.root) || "";
  const res = await fetch(root + "/gradio_api/upload", { method: "POST", body: form, credentials: "same-origin" });
  if (!res.ok) { return null; }
  const [path] = await res.json();
  return { path, orig_name: "microphone_live." + ext, size: blob.size, mime_type: type,
           meta: { _type: "gradio.FileData" } };
  } catch (err) {
    console.warn("e2v: the take could not be uploaded; the streamed chunks will be saved", err);
    return null;
  }
}
"""


def read_stream_chunk(path: str | Path) -> tuple[int, np.ndarray]:
    """Read one streamed WAV chunk: ``(rate, samples [n] or [n, channels])``, ignoring the header's data size.

    Only PCM 8/16/24/32-bit and 32-bit float are read (what browsers record); anything else raises
    ``audio_undecodable``. The data runs from the ``data`` chunk to the end of the file.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise E2VError("audio_undecodable", "麦克风数据不是 WAV。The microphone chunk is not a WAV file.")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        tag, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        if tag == b"fmt " and size >= 16:
            fmt = struct.unpack("<HHIIHH", raw[pos + 8 : pos + 24])
        elif tag == b"data":
            break
        pos += 8 + size + (size & 1)
    else:
        raise E2VError("audio_undecodable", "麦克风数据没有音频。The microphone chunk has no data.")
    if fmt is None:
        raise E2VError("audio_undecodable", "麦克风数据缺少格式。The microphone chunk has no format.")
    kind, channels, rate, _, _, bits = fmt
    dtypes = {(1, 8): np.uint8, (1, 16): np.int16, (1, 32): np.int32, (3, 32): np.float32, (0xFFFE, 16): np.int16}
    body = raw[pos + 8 :]
    if (kind, bits) == (1, 24):
        b = np.frombuffer(body[: len(body) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        data = b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24  # int32 arithmetic: the top byte carries the sign
    elif (kind, bits) in dtypes and channels >= 1 and rate > 0:
        dtype = np.dtype(dtypes[(kind, bits)])
        data = np.frombuffer(body[: len(body) // dtype.itemsize * dtype.itemsize], dtype)
        if dtype == np.uint8:
            data = (data.astype(np.int16) - 128) << 8
    else:
        raise E2VError("audio_undecodable", f"麦克风格式不支持。Unsupported microphone format {kind}/{bits}-bit.")
    data = data[: len(data) // channels * channels]
    return int(rate), (data.reshape(-1, channels) if channels > 1 else data)


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
            try:
                result = self.service.call(lambda engine, w=window: engine.recognize(w, "utterance", False))
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


def status_html(session: LiveSession | None, message: str = "") -> str:
    """The line under the microphone: duration, analysis progress, latest emotion.

    ``data-ticks`` (windows analysed), ``data-seconds`` (audio received), ``data-lag`` (s not yet
    analysed) and ``data-chunks`` are for automation.
    """
    if session is None:
        body = (
            "点击 Record 开始实时识别：每秒分析最近 3 秒。"
            "Press <b>Record</b> to start; the last 3 s are classified every second."
        )
        return f'<div class="e2v-live-status" data-ticks="0" data-seconds="0" data-lag="0">{body}</div>'
    n = len(session.ticks)
    lag = session.lag_s
    latest = ""
    if n:
        scores = session.ticks[-1]
        key = EMOTIONS[int(np.argmax(scores))]
        latest = (
            f" · 最近 {WINDOW_S:g} 秒 / last {WINDOW_S:g} s: {EMOJI[key]} {escape(ui_text.emotion_name(key))} "
            f"{ui_text.percent(float(scores.max()))}"
        )
    if lag > LAG_WARN_S:
        extra = (
            f' · <span class="e2v-live-lag">⏳ 分析落后 {lag:.1f} 秒，正在追赶（跳过部分窗口，音频完整保存）'
            f" / analysis {lag:.1f} s behind, catching up (skipping windows; all audio is kept)</span>"
        )
    elif session.skipped:
        extra = (
            f" · 分析已跟上，跳过 {session.skipped} 个窗口 / analysis caught up, "
            f"{session.skipped} window(s) skipped; all audio is kept"
        )
    else:
        extra = ""
    if session.error:
        extra += f" · {escape(session.error)}"
    if message:
        extra += f" · {escape(message)}"
    if session.truncated:
        extra += f" · 已达上限 / limit of {session.max_duration_s:g} s reached"
    return (
        f'<div class="e2v-live-status" data-ticks="{n}" data-seconds="{session.duration_s:.2f}" '
        f'data-lag="{lag:.2f}" data-chunks="{session.n_chunks}">'
        f"🎙️ 录音中 / Listening — {session.duration_s:.1f} s · 已分析 {n} 个窗口 / {n} window(s) analysed"
        f"{latest}{extra}</div>"
    )


def on_chunk(service, session: LiveSession | None, chunk) -> tuple[LiveSession, str]:
    """Handle one streamed chunk: append it and make sure the session's analyser runs. Never waits on the model.

    Args:
        service: the server's :class:`service.Service`.
        session: the recording so far (None for the first chunk).
        chunk: the chunk's WAV path from ``gr.Audio(streaming=True, type="filepath")`` (or ``(rate, samples)``).

    Returns:
        ``(session, status HTML)``.
    """
    if session is None:
        session = LiveSession(service.settings.max_duration_s)
    if chunk is not None and not (isinstance(chunk, str) and chunk == session.last_path):
        if isinstance(chunk, (str, Path)):
            session.last_path = str(chunk)  # the page may send one chunk twice; never append it twice
            try:
                chunk = read_stream_chunk(chunk)
            except (E2VError, OSError) as exc:
                log.warning("live chunk unreadable: %s", exc)
                session.error = "收到无法读取的音频块。A microphone chunk could not be read."
                chunk = None
        if chunk is not None:
            rate, data = chunk
            session.add(rate, data)
    if session.analyzer is None:
        session.analyzer = LiveAnalyzer(service, session)
        session.analyzer.start()
    return session, status_html(session)


def on_view(session: LiveSession | None):
    """The timeline figure when the analysis found something new since the last call, else None."""
    if session is None or len(session.ticks) == session.drawn_ticks:
        return None
    session.drawn_ticks = len(session.ticks)
    return timeline_html(session.timeline_result(), live=True)


def on_stop(service, session: LiveSession | None, take_path: str | None = None):
    """Stop the rolling analysis, classify the whole recording at frame granularity and write its run folder.

    Args:
        service: the server's :class:`service.Service`.
        session: the streamed recording (None when no chunk arrived).
        take_path: the page's own recording of the take, uploaded at Stop (None when the page had none):
            what is saved, since the streamed chunks may have gaps.

    Returns:
        A :class:`ui_handlers.RunView` (an error card when there is nothing to classify).
    """
    import dataclasses

    from emotion2vec_webui.audio.decode import DecodedAudio
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
    from emotion2vec_webui.ui.handlers import error_view, loading_or_error_view, view_run

    if session is not None and session.analyzer is not None:
        session.analyzer.stop()
    flow = Recognition(service.settings, RecognizeOptions(granularity="frame", extract_embedding=True))
    if take_path:
        try:
            decoded = flow.decode(Path(take_path), Path(take_path).name)
            decoded = dataclasses.replace(decoded, source_name=SOURCE_NAME, container="microphone")
            outcome = service.call(lambda engine: flow.finish(decoded, engine))
        except E2VError as exc:
            return loading_or_error_view(service, exc)
        _log_take(outcome, session)
        return view_run(service.settings.output_dir, outcome.run.run_id, outcome.result, outcome.log_text)
    if session is None or session.samples == 0:
        return error_view("audio_empty", "没有收到麦克风音频。No microphone audio was received.")
    wave = session.whole()
    if len(wave) < max(400, int(service.settings.min_duration_s * SAMPLE_RATE)):
        seconds = len(wave) / SAMPLE_RATE
        return error_view("audio_too_short", f"录音只有 {seconds:.2f} 秒。The recording is only {seconds:.2f} s long.")
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
    try:
        outcome = service.call(lambda engine: flow.finish(decoded, engine))
    except E2VError as exc:
        return loading_or_error_view(service, exc)
    _log_take(outcome, session)
    return view_run(service.settings.output_dir, outcome.run.run_id, outcome.result, outcome.log_text)


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
            type="filepath",  # read by read_stream_chunk: Gradio's numpy reader drops glued chunks
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
        view_timer = gr.Timer(VIEW_POLL_S, active=False)
        take = gr.File(visible=False, type="filepath", elem_id="live_take")  # the page's recording, set at Stop

        def chunk_event(session, chunk):
            return on_chunk(service, session, chunk)

        def view_event(session):
            fig = on_view(session)
            html = gr.skip() if session is None else status_html(session)
            return (gr.skip() if fig is None else fig), html

        def stop_event(session, take_path):
            view = on_stop(service, session, take_path)
            fig = run_timeline_html(view.result, view.files, view.run_id) or None
            return (
                None,  # the next recording starts a fresh session
                gr.update(value=view.card_html, visible=True),
                gr.skip() if fig is None else fig,
                gr.update(value=view.segments_html(), visible=view.is_frame),
                gr.update(value=list(view.files) or None, visible=bool(view.files)),
                view.run_label(),
                status_html(None),
                gr.Timer(active=False),
                None,  # the take is saved; the next one starts empty
            )

        mic.start_recording(
            lambda: gr.Timer(active=True),
            None,
            view_timer,
            queue=False,
            show_progress="hidden",
            api_visibility="private",
            js=TAKE_START_JS,
        )
        mic.stream(
            chunk_event,
            inputs=[state, mic],
            outputs=[state, status],
            stream_every=0.5,
            time_limit=int(service.settings.max_duration_s) + 5,
            concurrency_limit=1,  # chunks are buffered in order, and Stop (same queue) comes after them
            concurrency_id="e2v_live",
            show_progress="hidden",
            api_visibility="private",
        )
        view_timer.tick(
            view_event,
            inputs=[state],
            outputs=[timeline, status],
            concurrency_limit=1,
            concurrency_id="e2v_live_view",  # never in the chunks' queue
            show_progress="hidden",
            api_visibility="private",
        )
        mic.stop_recording(None, None, take, js=TAKE_STOP_JS, queue=False, api_visibility="private").then(
            stop_event,
            inputs=[state, take],
            outputs=[state, card, timeline, segments, files, run_label, status, view_timer, take],
            concurrency_limit=1,
            concurrency_id="e2v_live",
            show_progress="minimal",
            show_progress_on=[card],
            api_visibility="private",
        )
