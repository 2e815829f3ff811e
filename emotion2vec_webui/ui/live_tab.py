"""The Live tab: stream the microphone, grow a timeline while recording; Stop writes a run.

Only the Gradio wiring and what the page needs: the recording, its rolling
analysis and the run at Stop are the live-analysis core (``runs/live.py``).

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
buffer (:class:`runs.live.LiveSession`) and never waits for the model; the
session's :class:`runs.live.LiveAnalyzer` classifies the latest window in the
background. Even so, a busy server takes chunks slower than the page sends
them and Gradio drops the rest, so the streamed chunks feed only the rolling
analysis; the recording that is saved is made in the page itself
(:data:`TAKE_START_JS`: a ``MediaRecorder`` on the same microphone, which the
browser runs off the page's main thread), uploaded whole at Stop
(:data:`TAKE_STOP_JS`) and decoded like any upload. Only when the page could
not record it (no ``MediaRecorder``) is the run made from the streamed
chunks, with a warning that some may be missing (:func:`runs.live.save_take`).
A ``gr.Timer`` redraws the timeline from what the analyser found, outside the
chunk handler.

The handlers are plain Python, so tests can drive them without a browser;
:func:`build_live_tab` wires them to Gradio.
"""

from __future__ import annotations

import logging
import struct
from html import escape
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.runs.live import LAG_WARN_S, WINDOW_S, LiveAnalyzer, LiveSession, save_take
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.timeline import run_timeline_html, timeline_component, timeline_html

log = logging.getLogger(__name__)

VIEW_POLL_S = 1.0  # how often the page redraws the timeline while recording

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
    from emotion2vec_webui.ui.handlers import loading_or_error_view, view_run

    try:
        outcome = save_take(service, session, take_path)  # runs/live.py
    except E2VError as exc:
        return loading_or_error_view(service, exc)
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
