"""The Live tab: the microphone streamed to ``/api/v1/stream``; a timeline grows while recording; Stop shows the run.

The page is one more client of the WebSocket (docs/streaming.md), so the
browser and programs see the same events and the take is analysed and saved
by the same core (:class:`runs.live_stream.LiveStream`). The browser side is
``static/live/live.js`` (run by the device picker's ``js_on_load``, :func:`client_js`):

* **Calibration** and **abstain below** (the Recognize tab's pickers, ``ui/calibration_tab.py``) go into
  the ``start`` message (``calibration``, ``min_confidence``): the intervals, the status line and the saved
  run carry calibrated confidence and "uncertain / 不确定" as the Recognize tab's result does.
* **Record** asks the UI for a ticket (:func:`mint_ticket`, behind the UI's
  login when ``E2V_API_TOKEN`` is set; ``runs/live/stream_tickets.py``), then the
  page opens the socket with ``?ticket=…`` — it never holds the token — and
  streams the microphone from an ``AudioWorklet`` as ``f32le`` frames at the
  audio context's rate, every sample of the take, in order.
* Once a second a ``gr.Timer`` reads the page's report of what came back
  (intervals, ``behind`` warnings, audio sent) and redraws the status line
  (windows analysed, lag) and the timeline (:func:`on_view`); the report is
  checked like any client input (:meth:`runs.live.LiveProgress.from_report`).
* **Stop** sends ``stop``; the server saves the take as a run folder and its
  ``done`` names it; :func:`on_stop` shows that run like any other (card,
  timeline with the player, segments, downloads), or the stream's ``error``.

The handlers are plain Python, so tests can drive them without a browser;
:func:`build_live_tab` wires them to Gradio.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import ERROR_CODES, E2VError
from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.options import check_min_confidence
from emotion2vec_webui.runs.confidence import is_uncertain, shown
from emotion2vec_webui.runs.live.take_view import LAG_WARN_S, MAX_REPORT_CHARS, WINDOW_S, LiveProgress
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.calibration_tab import calibration_picker, min_confidence_box, refresh_calibrations
from emotion2vec_webui.ui.timeline import run_timeline_html, timeline_component, timeline_html

log = logging.getLogger(__name__)

VIEW_POLL_S = 1.0  # how often the page redraws the status and the timeline while recording
SCRIPT = Path(__file__).resolve().parent / "static" / "live" / "live.js"
MAX_END_CHARS = 64 * 1024  # the page's copy of the stream's last message (done or error)

START_JS = """(ticket, calibration, minConfidence) => {
  window.e2vLive.start(ticket, { calibration, min_confidence: minConfidence }).catch((err) => {
    console.warn("e2v: the microphone could not be streamed", err);
    window.__e2vStartError = "麦克风无法打开 / The microphone could not be opened: " + err;
  });
}"""
STOP_JS = "async () => (await window.e2vLive.stop()) || ''"
REPORT_JS = "(report, drawn, threshold) => [window.e2vLive.report(true), drawn, threshold]"
DEVICE_HTML = (
    '<label class="e2v-live-device">🎙️ 麦克风 / Microphone '
    '<select aria-label="麦克风 / Microphone"><option value="">默认 / Default</option></select></label>'
)


def client_js() -> str:
    """The page's streaming client (``static/live/live.js``), run when the tab's device picker mounts."""
    return SCRIPT.read_text("utf-8")


def mint_ticket(service) -> str:
    """A single-use ticket for the page's socket (only a logged-in page reaches this when a token is set)."""
    return service.stream_tickets.issue()


def status_html(progress: LiveProgress | None, message: str = "", min_confidence: float | None = None) -> str:
    """The line under the microphone: duration, analysis progress, latest emotion (``uncertain`` below
    ``min_confidence``, as the stream marks it).

    ``data-ticks`` (windows analysed), ``data-seconds`` (audio sent) and ``data-lag`` (s not yet
    analysed) are for automation.
    """
    if progress is None or (not progress.seconds and not progress.error and not progress.ticks):
        body = (
            "点击 Record 开始实时识别：每秒分析最近 3 秒。"
            "Press <b>Record</b> to start; the last 3 s are classified every second."
        )
        return f'<div class="e2v-live-status" data-ticks="0" data-seconds="0" data-lag="0">{body}</div>'
    n = len(progress.ticks)
    lag = progress.lag_s
    latest = ""
    if n:
        scores = progress.ticks[-1]
        key = EMOTIONS[int(np.argmax(scores))]
        answer = f"{EMOJI[key]} {escape(ui_text.emotion_name(key))} {ui_text.percent(float(scores.max()))}"
        if is_uncertain(float(scores.max()), min_confidence):
            answer = f'<span class="e2v-uncertain">{shown(answer, True)}</span>'  # its parts escaped above
        latest = f" · 最近 {WINDOW_S:g} 秒 / last {WINDOW_S:g} s: {answer}"
    if lag > LAG_WARN_S:
        extra = (
            f' · <span class="e2v-live-lag">⏳ 分析落后 {lag:.1f} 秒，正在追赶（跳过部分窗口，音频完整保存）'
            f" / analysis {lag:.1f} s behind, catching up (skipping windows; all audio is kept)</span>"
        )
    elif progress.skipped:
        extra = (
            f" · 分析已跟上，跳过 {progress.skipped} 个窗口 / analysis caught up, "
            f"{progress.skipped} window(s) skipped; all audio is kept"
        )
    else:
        extra = ""
    if progress.error:
        extra += f" · {escape(progress.error)}"
    if message:
        extra += f" · {escape(message)}"
    if progress.truncated:
        extra += f" · 已达上限 / limit of {progress.max_duration_s:g} s reached"
    return (
        f'<div class="e2v-live-status" data-ticks="{n}" data-seconds="{progress.seconds:.2f}" '
        f'data-lag="{lag:.2f}">'
        f"🎙️ 录音中 / Listening — {progress.seconds:.1f} s · 已分析 {n} 个窗口 / {n} window(s) analysed"
        f"{latest}{extra}</div>"
    )


def read_progress(report: str | None, max_duration_s: float) -> LiveProgress | None:
    """The page's report (JSON text) checked; None when there is none or it is malformed (logged)."""
    if not report:
        return None
    try:
        if len(report) > MAX_REPORT_CHARS:
            raise E2VError("bad_request", "The page's live report is too large. / 页面的实时报告过大。")
        return LiveProgress.from_report(json.loads(report), max_duration_s)
    except (E2VError, ValueError) as exc:
        log.warning("live report refused: %s", exc)
        return None


def on_view(report: str | None, drawn: int, max_duration_s: float = 600.0, min_confidence=None):
    """``(timeline HTML or None when nothing new, status HTML, intervals drawn)`` from the page's report
    (``min_confidence``: the take's threshold, as the box holds it; not a number: none)."""
    progress = read_progress(report, max_duration_s)
    try:
        threshold = check_min_confidence(min_confidence)
    except E2VError:  # the stream refuses it and says so; the line just shows no mark
        threshold = None
    html = status_html(progress, min_confidence=threshold)
    if progress is None or len(progress.ticks) == drawn:
        return None, html, drawn
    return timeline_html(progress.timeline_result(), live=True), html, len(progress.ticks)


def on_stop(service, end: str | None):
    """The run the stream saved (its ``done`` message, from the page), or the stream's ``error`` card.

    Args:
        service: the server's :class:`service.Service`.
        end: the stream's last message as the page received it (JSON text; empty when there was no take).

    Returns:
        A :class:`ui_handlers.RunView` (the run folder's name is checked by ``view_run``).
    """
    from emotion2vec_webui.ui.handlers import error_view, view_run

    try:
        message = json.loads(end) if end and len(end) <= MAX_END_CHARS else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return error_view("audio_empty", "没有收到麦克风音频。No microphone audio was received.")
    if message.get("type") == "done" and isinstance(message.get("run_id"), str):
        return view_run(service.settings.output_dir, message["run_id"])
    code = message.get("code")
    text = message.get("message")
    if code not in ERROR_CODES or not isinstance(text, str):
        code, text = "internal_error", "The stream ended without a result. / 音频流结束但没有结果。"
    return error_view(code, text[:2000])


def build_live_tab(service) -> None:
    """The Live tab (call inside ``gr.Blocks``): microphone stream → rolling emotion → run folder at Stop."""
    import gradio as gr

    max_s = service.settings.max_duration_s
    with gr.Tab(bilingual("Live", "实时"), elem_id="live_tab") as tab:
        gr.Markdown(
            "实时识别：每秒对最近 3 秒的麦克风音频做一次情绪识别；停止后整段录音按帧识别并保存为一次运行。"
            "页面与程序使用同一个 WebSocket 接口（/api/v1/stream）。  \n"
            "Live: every second, the last 3 s from the microphone are classified; when you stop, the whole "
            "recording is analysed frame by frame and saved as a normal run. The page streams to the same "
            "WebSocket as programs do (/api/v1/stream)."
        )
        with gr.Group(elem_id="live_audio"):
            gr.HTML(DEVICE_HTML, padding=False, js_on_load=client_js())  # defines window.e2vLive
            with gr.Row():
                record = gr.Button("录制 / Record", variant="primary", elem_id="live_record")
                stop = gr.Button("停止 / Stop", variant="stop", interactive=False, elem_id="live_stop")
        with gr.Row():  # as the Recognize tab's: a saved calibration, an abstention threshold (docs/calibration.md)
            calibration = calibration_picker(service, "live_calibration_pick")
            min_confidence = min_confidence_box("live_min_confidence")
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
        ticket = gr.Textbox(visible=False)  # the socket's single-use ticket, from mint_ticket to the page
        report = gr.Textbox(visible=False)  # what the page received so far (filled by REPORT_JS at each tick)
        drawn = gr.Number(0, visible=False, precision=0)  # intervals already on the timeline
        end = gr.Textbox(visible=False)  # the stream's last message (done or error), set at Stop

        def record_event():
            return mint_ticket(service), gr.update(interactive=False), gr.update(interactive=True), 0, \
                gr.Timer(active=True)  # fmt: skip

        def view_event(page_report, drawn_n, threshold):
            fig, html, n = on_view(page_report, int(drawn_n or 0), max_s, threshold)
            return (gr.skip() if fig is None else fig), html, n

        def stop_event(page_report, last):
            progress = read_progress(page_report, max_s)
            view = on_stop(service, last)
            fig = run_timeline_html(view.result, view.files, view.run_id) or None
            if fig is None and progress is not None and progress.ticks:  # an error: keep what was drawn
                fig = timeline_html(progress.timeline_result(), live=False)
            return (
                gr.update(value=view.card_html, visible=True),
                gr.skip() if fig is None else fig,
                gr.update(value=view.segments_html(), visible=view.is_frame),
                gr.update(value=list(view.files) or None, visible=bool(view.files)),
                view.run_label(),
                status_html(None),
                gr.Timer(active=False),
                gr.update(interactive=True),
                gr.update(interactive=False),
            )

        hidden = {"show_progress": "hidden", "api_visibility": "private"}
        record.click(record_event, None, [ticket, record, stop, drawn, view_timer], queue=False, **hidden).then(
            None, [ticket, calibration, min_confidence], None, js=START_JS, queue=False, **hidden
        )
        tab.select(lambda: refresh_calibrations(service), None, calibration, queue=False, api_visibility="private")
        view_timer.tick(view_event, [report, drawn, min_confidence], [timeline, status, drawn], js=REPORT_JS,
                        concurrency_limit=1, concurrency_id="e2v_live_view", **hidden)  # fmt: skip
        stop.click(None, None, [end], js=STOP_JS, queue=False, **hidden).then(
            None, None, [report], js="() => window.e2vLive.report()", queue=False, **hidden
        ).then(
            stop_event,
            inputs=[report, end],
            outputs=[card, timeline, segments, files, run_label, status, view_timer, record, stop],
            concurrency_limit=1,
            concurrency_id="e2v_live",
            show_progress="minimal",
            show_progress_on=[card],
            api_visibility="private",
        )
