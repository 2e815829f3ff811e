"""The Conversation tab: speakers, transcript and emotion per turn.

A recording goes through the one recognise flow with ``speakers`` set
(``channels``: one speaker per channel; ``auto``: diarization) and, when asked,
``transcribe``. The view shows:

- the player (the run's ``processed_audio.wav``, served by Gradio's file route);
- one lane per speaker on a shared time axis (time labels below, a playhead
  that follows the player), each turn a block coloured by its emotion;
- the transcript as a list of turns: speaker colour, time, emotion chip, text;
- a per-speaker summary: speaking share and the share of speaking time per emotion (stacked bars);
- with frame tracks (granularity ``frame``, what this tab asks for) each turn's emotion over time inside its
  block, and with result.json's ``summary`` the arc under the lanes, turning points and escalations that play
  from their time, the per-speaker table, a speaker filter and the report link (:mod:`ui.conversation_view`).

Clicking a turn (in a lane or in the list) moves the player there and plays:
one delegated click listener, installed by the component's ``js_on_load``
(Gradio does not run ``<script>`` inside ``gr.HTML``), so it survives every
re-render. Speakers can be renamed (``left=Agent, right=Customer``), when
analysing or afterwards with "Save names": the names are saved into the run
(result.json ``speakers[].label``, the subtitle files and turns.csv;
:mod:`runs.speaker_names`); the ids stay.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.options import SPEAKERS
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.speaker_names import apply_names, parse_names, rename_speakers
from emotion2vec_webui.runs.storage import run_path
from emotion2vec_webui.ui import conversation_view
from emotion2vec_webui.ui import option_controls as controls
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.option_controls import speaker_count
from emotion2vec_webui.ui.timeline import file_url

log = logging.getLogger(__name__)

# The tab's words for options.SPEAKERS' values (a conversation has speakers: "none" is not offered).
MODE_LABELS = {"channels": bilingual("one speaker per channel", "每声道一位说话人"),
               "auto": bilingual("automatic (diarization)", "自动区分说话人")}  # fmt: skip
SPEAKER_COLORS = ("#0b7285", "#c2255c", "#5f3dc4", "#e67700", "#2b8a3e", "#1864ab", "#862e9c", "#a61e4d")

_CLICK_JS = """
element.addEventListener('click', (ev) => {
  const turn = ev.target.closest('[data-start]');
  if (!turn) return;
  const player = element.querySelector('audio');
  if (!player) return;
  player.currentTime = parseFloat(turn.dataset.start);
  element.querySelectorAll('.e2v-conv-turn.active').forEach((n) => n.classList.remove('active'));
  if (turn.dataset.index) element.querySelectorAll(`.e2v-conv-turn[data-index="${turn.dataset.index}"]`).forEach((n) => n.classList.add('active'));
  const p = player.play(); if (p && p.catch) p.catch(() => {});
});
element.addEventListener('timeupdate', (ev) => {  // timeupdate does not bubble: caught on the way down
  const view = element.querySelector('.e2v-conv');
  if (!view || ev.target.tagName !== 'AUDIO') return;
  const x = Math.min(100, 100 * ev.target.currentTime / parseFloat(view.dataset.duration));
  element.querySelectorAll('.e2v-conv-playhead').forEach((n) => { n.style.left = `${x}%`; });
}, true);
""" + conversation_view.FILTER_JS

_CSS = """
.e2v-conv-lanes{position:relative;margin:8px 0}
.e2v-conv-lane{display:flex;align-items:center;gap:8px;margin:4px 0}
.e2v-conv-lane-name{width:90px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.e2v-conv-track{position:relative;flex:1;height:26px;background:rgba(128,128,128,.12);border-radius:4px}
.e2v-conv-block{position:absolute;top:2px;bottom:2px;border-radius:3px;cursor:pointer;opacity:.9;min-width:2px}
.e2v-conv-playhead{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#228be6;pointer-events:none}
.e2v-conv-axis{display:flex;align-items:center;gap:8px}
.e2v-conv-ticks{position:relative;flex:1;height:16px;font-size:11px;font-family:monospace;opacity:.7}
.e2v-conv-ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.e2v-conv-list{max-height:420px;overflow:auto;margin-top:8px}
.e2v-conv-turn.e2v-conv-item{display:flex;gap:10px;align-items:baseline;padding:6px 8px;margin:3px 0;border-left:5px solid;
  border-radius:4px;cursor:pointer;background:rgba(128,128,128,.06)}
.e2v-conv-turn.active{outline:2px solid #228be6}
.e2v-conv-time{font-family:monospace;white-space:nowrap;opacity:.8}
.e2v-conv-chip{border-radius:10px;padding:0 8px;color:#fff;white-space:nowrap}
.e2v-conv-asr{white-space:nowrap;opacity:.8}
.e2v-conv-bar{display:flex;height:16px;border-radius:3px;overflow:hidden;flex:1}
"""


def _axis(duration: float) -> str:
    """Time labels under the lanes, at a round step giving at most ~8 labels."""
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800) if duration / s <= 8), 3600)
    ticks = "".join(f'<span style="left:{100 * t / duration:.3f}%">{_clock(t)[:-2]}</span>'
                    for t in range(0, int(duration) + 1, step) if 0 < t < duration)  # fmt: skip
    return (f'<div class="e2v-conv-axis"><div class="e2v-conv-lane-name"></div>'
            f'<div class="e2v-conv-ticks">{ticks}</div></div>')  # fmt: skip


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:04.1f}"


def conversation_html(result: dict, audio_url: str | None, names: dict[str, str] | None = None,
                      files: dict[str, str] | None = None) -> str:  # fmt: skip
    """The whole view for one conversation result (result.json with ``speakers`` and ``turns``).

    A speaker is shown by its ``label`` (its saved name), or by ``names[id]`` when given.
    """
    speakers = result.get("speakers") or []
    names = {**{s["id"]: s.get("label") or s["id"] for s in speakers}, **(names or {})}
    turns = result.get("turns") or []
    duration = max(float(result["audio"]["duration_s"]), 1e-6)
    color = {s["id"]: SPEAKER_COLORS[i % len(SPEAKER_COLORS)] for i, s in enumerate(speakers)}

    def label(sid: str) -> str:
        return escape(names.get(sid, sid))

    player = (f'<audio controls preload="auto" id="conversation_player" src="{escape(audio_url)}" '
              'style="width:100%"></audio>') if audio_url else ""  # fmt: skip
    tracked = any(t.get("frames") for t in turns)  # granularity=frame: each turn's own emotion track
    lanes = []
    for s in speakers:
        blocks = "".join(
            f'<div class="e2v-conv-block e2v-conv-turn{" e2v-conv-has-track" if t.get("frames") else ""}" '
            f'data-index="{t["index"]}" data-start="{t["start_s"]}" data-speaker="{escape(t["speaker"])}" '
            f'title="{_clock(t["start_s"])}–{_clock(t["end_s"])} {escape(ui_text.emotion_name(t["emotion"]))} '
            f'{t["confidence"]:.2f} — {bilingual("click to play", "点击播放")}" '
            f'style="left:{100 * t["start_s"] / duration:.3f}%;width:{100 * (t["end_s"] - t["start_s"]) / duration:.3f}%;'
            f'background:{(c := ui_text.EMOTION_COLORS.get(t["emotion"], "#888"))};border-color:{c}">'
            f'{conversation_view.track_svg(t.get("frames") or {}, (t["end_s"] - t["start_s"]) / duration)}</div>'
            for t in turns
            if t["speaker"] == s["id"]
        )
        lanes.append(
            f'<div class="e2v-conv-lane" data-speaker="{escape(s["id"])}">'
            f'<div class="e2v-conv-lane-name" style="color:{color[s["id"]]}">{label(s["id"])}</div>'
            f'<div class="e2v-conv-track">{blocks}<div class="e2v-conv-playhead" style="left:0%"></div></div></div>'
        )
    items = []
    for t in turns:
        emo = t["emotion"]
        second = ""
        if t.get("asr_emotion"):
            asr_tip = bilingual("the emotion the ASR model (SenseVoice) heard", "语音识别模型（SenseVoice）听出的情绪")
            second = (f' <span class="e2v-conv-asr" title="{escape(asr_tip)}">ASR: {EMOJI[t["asr_emotion"]]} '
                      f'{escape(ui_text.emotion_name(t["asr_emotion"]))}</span>')  # fmt: skip
        text = escape(t.get("text") or "")
        items.append(
            f'<div class="e2v-conv-turn e2v-conv-item" data-index="{t["index"]}" data-start="{t["start_s"]}" '
            f'data-speaker="{escape(t["speaker"])}" style="border-color:{color.get(t["speaker"], "#888")}">'
            f'<b style="color:{color.get(t["speaker"], "#888")}">{label(t["speaker"])}</b>'
            f'<span class="e2v-conv-time">{_clock(t["start_s"])}–{_clock(t["end_s"])}</span>'
            f'<span class="e2v-conv-chip" data-emotion="{escape(emo)}" '
            f'style="background:{ui_text.EMOTION_COLORS.get(emo, "#888")}">{EMOJI[emo]} '
            f"{escape(ui_text.emotion_name(emo))} {t['confidence']:.2f}</span>{second}"
            f'<span class="e2v-conv-text">{text}</span></div>'
        )
    summary = []
    table = conversation_view.summary_table_html(result.get("summary"), label, color)
    for s in speakers if not table else ():  # without a summary block (older runs): the shares only
        bars = "".join(
            f'<div title="{escape(ui_text.emotion_name(k))} {v:.0%}" '
            f'style="width:{100 * v:.2f}%;background:{ui_text.EMOTION_COLORS.get(k, "#888")}"></div>'
            for k in EMOTIONS
            if (v := s["emotion_share"].get(k, 0.0)) > 0
        )
        dom = s.get("dominant_emotion")
        summary.append(
            f'<div class="e2v-conv-lane e2v-conv-summary" data-speaker="{escape(s["id"])}">'
            f'<div class="e2v-conv-lane-name" style="color:{color[s["id"]]}">{label(s["id"])}</div>'
            f'<div class="e2v-conv-bar">{bars}</div>'
            f'<div style="width:260px">{s["speaking_share"]:.0%} · {s["turns"]} '
            f'{bilingual("turns", "轮")} · {EMOJI.get(dom, "")} {escape(ui_text.emotion_name(dom) if dom else "")}</div></div>'
        )
    files = dict(files or {})
    report = conversation_view.report_link_html(files.pop("report.html", None))
    links = " · ".join(f'<a href="{escape(url)}" download>{escape(name)}</a>' for name, url in files.items())
    random_note = ""
    if result.get("model", {}).get("random_weights"):
        random_note = ('<div class="e2v-conf-label">随机权重模型：情绪与文字无意义 / random-weight models: emotions and '
                       "words are meaningless</div>")  # fmt: skip
    lanes_title = bilingual("Speaker lanes", "说话人轨道")
    if tracked:
        lanes_title += " · " + bilingual("inside each turn: its emotion over time (nine scores stacked)",
                                         "每轮内：该轮情绪随时间变化（九类得分堆叠）")  # fmt: skip
    arc, moments = conversation_view.arc_html(result.get("summary"), duration, label)
    summary_title = (bilingual("Per-speaker summary", "各说话人摘要") if table else
                     bilingual("Per-speaker emotions (share of speaking time)", "各说话人情绪（占说话时长）"))  # fmt: skip
    return (
        f"<style>{_CSS}{conversation_view.CSS}</style>"
        f'<div class="e2v-conv" data-turns="{len(turns)}" data-speakers="{len(speakers)}" data-duration="{duration}">'
        f"{random_note}{player}{report}"
        f'<div class="e2v-section">{lanes_title}</div>{conversation_view.filter_html(speakers, label)}'
        f'<div class="e2v-conv-lanes{" e2v-conv-tracks" if tracked else ""}" id="conversation_lanes">{"".join(lanes)}'
        f"{arc}{_axis(duration)}{moments}</div>"
        f'<div class="e2v-section">{summary_title}</div>'
        f'<div id="conversation_summary">{table}{"".join(summary)}</div>'
        f'<div class="e2v-section">{bilingual("Transcript", "转写")} · {len(turns)} {bilingual("turns", "轮")}'
        f'{" · " + links if links else ""}</div>'
        f'<div class="e2v-conv-list" id="conversation_turns">{"".join(items)}</div></div>'
    )


def analyse(service, audio_path: str | None, speakers: str, num_speakers, transcribe: bool,
            names: str = "", *, segmentation=None, channels=None, asr_model=None,
            head=None) -> tuple[str, str | None]:  # fmt: skip
    """Run one conversation through the service; every failure becomes an error card.

    ``segmentation``, ``channels``, ``asr_model`` and ``head`` are REST's (options.py; empty: the default).

    Returns:
        The view, and the run folder (for "Save names"; None when nothing was saved).
    """
    try:
        if not audio_path:
            raise E2VError("bad_request", "Upload a recording first. / 请先上传录音。")
        # granularity=frame: each turn keeps its frame track (drawn inside the turn), from the same model pass
        options = RecognizeOptions(extract_embedding=False, speakers=speakers, num_speakers=speaker_count(num_speakers),
                                   transcribe=bool(transcribe), granularity="frame", segmentation=segmentation,
                                   channels=channels, asr_model=asr_model or None, head=head or None)  # fmt: skip
        outcome = service.recognize(audio_path, source_name=Path(audio_path).name, options=options)
        folder = outcome.run.path if outcome.run is not None else None
        result = outcome.result
        ids = {s["id"] for s in result.get("speakers") or []}
        known = {k: v for k, v in parse_names(names).items() if k in ids}  # names for other modes' ids: ignored
        if known:
            result = rename_speakers(folder, known) if folder else apply_names(result, known)
        if folder is not None:
            _write_report(folder, result)
    except E2VError as exc:
        return ui_text.error_card_html(exc.code, exc.message), None, ""
    except Exception:  # the page shows a message, the log keeps the trace
        log.exception("UI conversation failed")
        error = ui_text.error_card_html("internal_error", "Unexpected error; see the server log. / 意外错误，请查看服务器日志。")
        return error, None, ""
    return _view(result, folder), (str(folder) if folder else None), run_info_html(result, folder)


def _write_report(folder: Path, result: dict) -> None:
    """The run's report.html (runs/report.py), for the view's "Download report"; a failed write only loses the link."""
    from emotion2vec_webui.runs.report import write_report

    try:
        write_report(folder, result)
    except OSError as exc:
        log.warning("conversation report not written in %s: %s", folder, exc)


def run_info_html(result: dict, folder: Path | None) -> str:
    """What sits above the rename box after an analysis: the run folder, result.json, and the ids to rename."""
    speakers = result.get("speakers") or []
    ids = ", ".join(
        f"<code>{escape(s['id'])}</code>" + (f" ({escape(s['label'])})" if s.get("label") not in (None, s["id"]) else "")
        for s in speakers
    )
    parts = []
    if folder is not None:
        link = f'<a href="{escape(file_url(folder / "result.json"))}" download>result.json</a>'
        parts.append(f'{bilingual("Run folder", "运行文件夹")}: <code>{escape(folder.name)}</code> · {link}')
    if speakers:
        example = ", ".join(f"{s['id']}=…" for s in speakers[:2])
        parts.append(
            f'{bilingual("Speaker ids", "说话人编号")}: {ids} — '
            f'{bilingual("rename as", "重命名格式")} <code>{escape(example)}</code>'
        )
    return f'<div id="conversation_run_info" class="e2v-conf-label">{"<br>".join(parts)}</div>' if parts else ""


def _view(result: dict, folder: Path | None) -> str:
    audio = file_url(folder / "processed_audio.wav") if folder else None
    names = ("result.json", "transcript.srt", "transcript.vtt", "turns.csv", "report.html")
    files = {n: file_url(folder / n) for n in names if (folder / n).is_file()} if folder else {}
    return conversation_html(result, audio, None, files)


def save_names(service, folder: str | None, names: str):
    """Save the names typed in "Rename speakers" into the last analysed run and show it again.

    The names are checked against the run's speaker ids before anything is written; a refusal is shown
    beside the box and leaves the view (lanes, transcript) as it was.

    Returns:
        The new view (or ``gr.skip()`` on error: the page keeps what it shows), and the message beside the box.
    """
    import gradio as gr

    try:
        if not folder:
            raise E2VError("bad_request", "Analyse a conversation first. / 请先分析一段对话。")
        path = run_path(service.settings.output_dir, Path(folder).name)  # only a run folder of this server
        if path is None:
            raise E2VError("not_found", "That run is gone. / 该运行已不存在。")
        result = rename_speakers(path, parse_names(names))
    except E2VError as exc:
        return gr.skip(), ui_text.error_card_html(exc.code, exc.message)
    except Exception:
        log.exception("UI speaker rename failed")
        error = ui_text.error_card_html("internal_error", "Unexpected error; see the server log. / 意外错误，请查看服务器日志。")
        return gr.skip(), error
    saved = ", ".join(f"{s['id']}={s.get('label') or s['id']}" for s in result.get("speakers") or [])
    note = f'<div class="e2v-conf-label" id="conversation_names_saved">✓ {bilingual("Saved", "已保存")}: {escape(saved)}</div>'
    return _view(result, path), note


def build_conversation_tab(service) -> None:
    """The Conversation tab (call inside ``gr.Blocks``)."""
    import gradio as gr

    from emotion2vec_webui.ui.train_tab import head_picker, refresh_picker

    with gr.Tab(bilingual("Conversation", "对话"), elem_id="conversation_tab") as tab:
        gr.Markdown(
            "谁在什么时候说了什么、情绪如何：每个声道一位说话人（客服录音），或自动区分说话人；可选转写。点击一轮可跳转播放。  \n"
            "Who spoke when, what they said and how they felt: one speaker per channel (call recordings) or automatic "
            "speaker separation; optional transcript. Click a turn to play it."
        )
        with gr.Row():
            audio = gr.Audio(sources=["upload"], type="filepath", label=bilingual("Recording", "录音"),
                             elem_id="conversation_audio")  # fmt: skip
            with gr.Column():
                mode = gr.Radio([(MODE_LABELS[v], v) for v in SPEAKERS.values if v in MODE_LABELS], value="channels",
                                label=bilingual("Speakers", "说话人"), elem_id="conversation_speakers")  # fmt: skip
                count = controls.num_speakers_number("conversation_num_speakers")
                transcribe = gr.Checkbox(value=False, label=bilingual("Transcript (ASR)", "转写（语音识别）"),
                                         elem_id="conversation_transcribe")  # fmt: skip
                with gr.Accordion(bilingual("More options (as the REST API)", "更多选项（与 REST API 相同）"),
                                  open=False, elem_id="conversation_more"):  # fmt: skip
                    more = [controls.segmentation_radio("conversation_segmentation"),
                            controls.channels_dropdown("conversation_channels"),
                            controls.asr_model_dropdown("conversation_asr_model", service.settings.asr_model),
                            head_picker(service, "conversation_head_pick")]  # fmt: skip
        button = gr.Button(bilingual("Analyse conversation", "分析对话"), variant="primary", elem_id="conversation_button")
        # Renaming comes after the analysis: the ids it needs are listed here once a run exists.
        info = gr.HTML(elem_id="conversation_info")
        with gr.Row(equal_height=True):
            names = gr.Textbox(label=bilingual("Rename speakers", "重命名说话人"), scale=3,
                               placeholder="例如 / e.g. left=Agent, right=Customer", elem_id="conversation_names")  # fmt: skip
            rename = gr.Button(bilingual("Save names", "保存名称"), size="sm", scale=1, elem_id="conversation_save_names")
        names_status = gr.HTML(elem_id="conversation_names_status")
        out = gr.HTML(elem_id="conversation_view", js_on_load=_CLICK_JS)
        run_folder = gr.State(None)
        rename.click(lambda f, n: save_names(service, f, n), inputs=[run_folder, names], outputs=[out, names_status],
                     api_name="conversation_save_names", api_visibility="undocumented", concurrency_limit=1)  # fmt: skip
        button.click(
            lambda a, m, c, t, n, seg, ch, asr, hd: (*analyse(service, a, m, c, t, n, segmentation=seg, channels=ch,
                                                               asr_model=asr, head=hd), ""),
            inputs=[audio, mode, count, transcribe, names, *more],
            outputs=[out, run_folder, info, names_status],
            api_name="conversation_ui",
            api_visibility="undocumented",
            concurrency_limit=1,
        )
        tab.select(lambda: refresh_picker(service), None, more[-1], queue=False, api_visibility="private")
