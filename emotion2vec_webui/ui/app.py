"""The Gradio web UI: layout and event wiring (what events do lives in ``ui_handlers``).

The server mounts it with::

    gr.mount_gradio_app(app, ui.build_ui(service), path="/", **ui.mount_kwargs(settings))

Security settings follow Gradio's guide: uploads are capped at
``E2V_MAX_UPLOAD_MB`` (``max_file_size``), the only extra folder Gradio may
serve is the outputs root (``allowed_paths``), Gradio's temp files go to a
folder we own (``GRADIO_TEMP_DIR``, default ``<outputs>/.gradio-tmp``), file
outputs only point at artifacts of run folders we wrote, and when
``E2V_API_TOKEN`` is set the page asks for a login: any user name, the token
as password.

Each tab is built by its own module (``live_tab``, ``batch_tab``,
``similarity_tab``, ``system_tab``, ``history_tab``); Recognize is built here.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from emotion2vec_webui.config import Settings, gradio_temp_dir
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import bilingual
from emotion2vec_webui.options import CHANNEL_NAMES, GRANULARITY, SEGMENTATION
from emotion2vec_webui.ui import handlers as ui_handlers
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.batch_tab import build_batch_tab
from emotion2vec_webui.ui.calibration_tab import calibration_picker, min_confidence_box, refresh_calibrations
from emotion2vec_webui.ui.conversation_tab import build_conversation_tab
from emotion2vec_webui.ui.gradio_strings import gradio_i18n
from emotion2vec_webui.ui.gradio_strings import head_html as gradio_strings_head_html
from emotion2vec_webui.ui.history_tab import build_history_tab
from emotion2vec_webui.ui.live_tab import build_live_tab
from emotion2vec_webui.ui.progress import relay_progress
from emotion2vec_webui.ui.similarity_tab import build_similarity_tab
from emotion2vec_webui.ui.system_tab import build_system_tab
from emotion2vec_webui.ui.timeline import head_html as timeline_head_html
from emotion2vec_webui.ui.timeline import run_timeline_html, timeline_component
from emotion2vec_webui.ui.train_tab import build_train_tab, head_picker, refresh_picker

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSS_PATH = STATIC_DIR / "ui.css"
STATUS_POLL_S = 1.0  # model status refresh while loading
# 50 frames a second × 1,024 float32 values: what embedding.npy costs at frame granularity.
EMBEDDING_SIZE_INFO = (
    "逐帧时每 20 ms 一个向量（约每分钟 12 MB），选择逐帧时默认关闭 / at frame granularity one vector every 20 ms "
    "(about 12 MB per minute of audio): unticked when Frame is chosen"
)
UI_CONCURRENCY = 2  # UI events decoding at once; inference itself is serialised by the service
FONT_STACK = ["Noto Sans", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"]


def segmentation_choices(granularity: str) -> list[tuple[str, str]]:
    """The Segments choices as they apply at ``granularity`` (the values stay ``frames`` / ``vad``).

    ``frames`` cuts segments from runs of frame emotions, which only frame granularity has: at utterance
    granularity it means one result for the whole clip, and the choice says that (runs/recognize.py).
    ``vad`` classifies each spoken phrase at either granularity.
    """
    labels = {
        "frames": "按帧情绪分段 / From the frame emotions" if granularity == "frame"
        else "不分段 / None — one result for the whole clip",
        "vad": "按语音分句 / Split by speech (VAD)",
    }  # fmt: skip
    return [(labels[v], v) for v in SEGMENTATION.values]  # the values: options.SEGMENTATION


# The Recognize tab's longer labels; the values come from options.py.
GRANULARITY_LABELS = {
    "utterance": "整句 / Utterance — one emotion for the whole clip",
    "frame": "逐帧 / Frame — emotion every 20 ms: timeline and segments",
}
CHANNEL_LABELS = {"mix": "混合 / Mix all channels", "left": "左声道 / Left", "right": "右声道 / Right"}


def configure_gradio_env(settings: Settings) -> Path:
    """Point Gradio's temp folder at one we own and turn off its analytics.

    Call before Gradio is imported for full effect (a few video helpers read the
    variable at import); :func:`build_ui` calls it too, which covers uploads and
    served files. Returns the temp folder.
    """
    tmp = gradio_temp_dir(settings)
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(tmp)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return tmp


def token_auth(token: str):
    """A Gradio ``auth`` callable: any user name, the API token as password."""

    def check(username: str, password: str) -> bool:
        return hmac.compare_digest((password or "").encode(), token.encode())

    return check


def mount_kwargs(settings: Settings) -> dict:
    """Keyword arguments for ``gr.mount_gradio_app``: limits, served paths, login, look."""
    import gradio as gr

    kwargs: dict = {
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": [str(Path(settings.output_dir).resolve())],
        "show_error": False,  # unexpected exceptions never reach the page; ours are gr.Error / error cards
        "theme": gr.themes.Default(primary_hue="indigo", neutral_hue="slate", font=FONT_STACK),
        "css_paths": [CSS_PATH],
        "footer_links": ["api", "settings"],
        # the interactive timeline's script and styles (served by the app); Gradio's own aria-labels bilingual
        "head": timeline_head_html() + gradio_strings_head_html(),
    }
    if settings.api_token:
        kwargs["auth"] = token_auth(settings.api_token)
        kwargs["auth_message"] = "输入任意用户名，密码为 API 令牌。Any user name; the password is E2V_API_TOKEN."
    return kwargs


@dataclass(frozen=True)
class ResultView:
    """The components that show one run (Recognize and History each have one)."""

    card: object
    timeline: object
    segments: object
    files: object
    run_label: object
    log: object

    def outputs(self) -> list:
        return [self.card, self.timeline, self.segments, self.files, self.run_label, self.log]


def _result_view(prefix: str, card_id: str, placeholder: str) -> ResultView:
    import gradio as gr

    card = gr.HTML(placeholder, elem_id=card_id)
    timeline = timeline_component(f"{prefix}timeline")  # ui/timeline.py: waveform, scores, playhead, segments
    segments = gr.HTML(visible=False, elem_id=f"{prefix}segments")
    files = gr.File(
        label=bilingual("Downloads", "下载"),
        file_count="multiple",
        interactive=False,
        visible=False,
        elem_id=f"{prefix}downloads",
        elem_classes="e2v-downloads",
    )
    run_label = gr.Markdown(elem_id=f"{prefix}run_folder")
    with gr.Accordion(bilingual("Processing log", "处理日志"), open=False):
        log_box = gr.Textbox(show_label=False, lines=6, max_lines=16, interactive=False, elem_id=f"{prefix}log")
    return ResultView(card, timeline, segments, files, run_label, log_box)


def _view_updates(view: ui_handlers.RunView) -> list:
    """Component values for one RunView (hiding what does not apply)."""
    import gradio as gr

    frame = view.is_frame
    return [
        view.card_html,
        gr.update(value=run_timeline_html(view.result, view.files, view.run_id), visible=frame),
        gr.update(value=view.segments_html(), visible=view.has_segments),
        gr.update(value=list(view.files) or None, visible=bool(view.files)),
        view.run_label(),
        view.log_text,
    ]


def _recognize_tab(service) -> None:
    import gradio as gr

    from emotion2vec_webui.ui.examples.make_examples import example_label, example_paths

    with gr.Tab(bilingual("Recognize", "识别"), id="recognize") as recognize_tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                audio = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label=bilingual("Audio — drop a file, click to upload, or record", "音频：拖放、点击上传或录音"),
                    elem_id="audio_in",
                )
                audio_url = gr.Textbox(
                    label=bilingual("…or an audio/video URL (http/https)", "…或音频/视频链接（http/https）"),
                    placeholder="https://example.com/clip.mp3",
                    max_lines=1,
                    elem_id="audio_url",
                )
                channels = gr.Dropdown(
                    choices=[(CHANNEL_LABELS[v], v) for v in CHANNEL_NAMES.values],
                    value=CHANNEL_NAMES.default,
                    allow_custom_value=True,  # a channel index (0, 1, 2 …) may be typed
                    label=bilingual("Channels", "声道"),
                    info="立体声：混合、取一个声道或输入序号 0、1… / stereo: mix, one channel, or type an index",
                    elem_id="channels",
                )
                granularity = gr.Radio(
                    choices=[(GRANULARITY_LABELS[v], v) for v in GRANULARITY.values],
                    value=GRANULARITY.default,
                    label=bilingual("Granularity", "粒度"),
                    elem_id="granularity",
                )
                embedding = gr.Checkbox(
                    value=True,
                    label=bilingual("Extract embedding (embedding.npy)", "提取特征向量"),
                    info=EMBEDDING_SIZE_INFO,
                    elem_id="extract_embedding",
                )
                segmentation = gr.Radio(
                    choices=segmentation_choices(GRANULARITY.default),  # relabelled when the granularity changes
                    value=SEGMENTATION.default,
                    label=bilingual("Segments", "分段"),
                    info="VAD：在停顿处切分，每句话单独识别 / split at pauses, one emotion per phrase",
                    elem_id="segmentation",
                )
                head = head_picker(service, "head_pick")  # a trained head (Train tab), beside the nine classes
                calibration = calibration_picker(service, "calibration_pick")  # calibrated confidence (Train tab)
                min_confidence = min_confidence_box("min_confidence")  # abstain below it: "uncertain / 不确定"
                with gr.Row():
                    clear = gr.Button(bilingual("Clear", "清除"), variant="secondary", elem_id="clear_button")
                    run = gr.Button(bilingual("Recognize", "开始识别"), variant="primary", elem_id="run_button")
                examples = example_paths()
                if examples:
                    gr.Examples(
                        examples=[[str(p), "frame" if i % 2 else "utterance"] for i, p in enumerate(examples)],
                        inputs=[audio, granularity],
                        label=bilingual("Examples (synthetic speech)", "示例（合成语音）"),
                        example_labels=[example_label(p) for p in examples],
                    )
            with gr.Column(scale=7, min_width=320):
                view = _result_view("", "result_card", ui_text.placeholder_card_html())

        def on_recognize(audio_path, gran, emb, seg, url, chans, head_name, cal, min_conf, progress=gr.Progress()):
            # One bar with the real steps (decoding → window k of n with an ETA → writing), no estimate from an
            # earlier run. Gradio's Progress only works on the event's own thread, and the windows are reported
            # from the inference worker: the run goes on a helper thread and this one relays its latest step.
            progress(0.05, desc="解码中 / decoding")
            return _view_updates(
                relay_progress(
                    lambda step: ui_handlers.recognize(
                        service, audio_path, gran, emb, seg, url=url, channels=chans, head=head_name, progress=step,
                        calibration=cal, min_confidence=min_conf,
                    ),
                    lambda fraction, what: progress(fraction, desc=what),
                )
            )

        # Frame granularity keeps one vector per 20 ms (~12 MB a minute): the box is unticked when frames are
        # chosen, so a long file does not silently write a large embedding.npy; utterance ticks it again.
        # The Segments choice says what it does at this granularity (utterance: none or one per phrase).
        granularity.change(
            lambda g: (g != "frame", gr.update(choices=segmentation_choices(g))),
            granularity,
            [embedding, segmentation],
            queue=False,
            api_visibility="private",
        )
        run.click(
            on_recognize,
            [audio, granularity, embedding, segmentation, audio_url, channels, head, calibration, min_confidence],
            view.outputs(),
            api_name="recognize_ui",
            api_visibility="undocumented",
            scroll_to_output=True,  # on a phone the result is below the inputs
            show_progress_on=[view.card],  # one bar, over the result card
        )

        def on_clear():
            empty = ui_handlers.RunView(ui_text.placeholder_card_html(), None, None, (), "")
            return [None, "", *_view_updates(empty)]

        clear.click(on_clear, None, [audio, audio_url, *view.outputs()], queue=False, api_visibility="private")
        recognize_tab.select(lambda: refresh_picker(service), None, head, queue=False, api_visibility="private")
        recognize_tab.select(lambda: refresh_calibrations(service), None, calibration, queue=False,
                             api_visibility="private")  # fmt: skip

        # The scripting endpoint: REST's options (checked by RecognizeOptions), the result.json object
        # (plus run_id) out, named "result" for gradio_client (not value_N).
        api_out = gr.JSON(visible=False, label="result")
        api_trigger = gr.Button(visible=False)

        # None defaults: gradio_client treats those parameters as optional
        def recognize_api(audio, granularity, extract_embedding, segmentation="frames", channels="mix", head=None,
                          audio_url=None):  # fmt: skip
            try:
                return ui_handlers.recognize_api(service, audio, granularity, extract_embedding, segmentation,
                                                 channels=channels, head=head, audio_url=audio_url)  # fmt: skip
            except E2VError as exc:
                raise gr.Error(f"{exc.message} [{exc.code}]") from None

        api_trigger.click(
            recognize_api,
            [audio, granularity, embedding, segmentation, channels, head, audio_url],
            api_out,
            api_name="recognize",
            api_description="Recognize one audio file (or audio_url when no file): granularity, extract_embedding, "
            "segmentation, channels, head as REST takes them; returns result.json plus run_id.",
        )


def build_ui(service):
    """The whole web app as a queued ``gr.Blocks`` (see the module docstring for mounting)."""
    configure_gradio_env(service.settings)
    import gradio as gr

    with gr.Blocks(title="语音情感识别 · Emotion2Vec+", delete_cache=(3600, 24 * 3600)) as demo:
        gr.HTML(ui_text.header_html(), elem_id="e2v_header")
        status = gr.HTML(ui_handlers.status_banner(service)[0], elem_id="model_status")
        timer = gr.Timer(STATUS_POLL_S)
        with gr.Tabs():
            _recognize_tab(service)
            build_live_tab(service)
            build_batch_tab(service)
            build_train_tab(service)
            build_similarity_tab(service)
            build_conversation_tab(service)  # speakers, transcript and emotion per turn (issue 20)
            build_history_tab(service, _result_view, _view_updates)  # search, batches, conversations (issue 30)
            build_system_tab(service)

        def on_tick():
            html, done = ui_handlers.status_banner(service)
            return html, gr.Timer(active=not done)

        timer.tick(on_tick, None, [status, timer], queue=False, show_progress="hidden", api_visibility="private")
        # The banner as of page load (a callable value would publish an unnamed /lambda API endpoint).
        demo.load(on_tick, None, [status, timer], queue=False, show_progress="hidden", api_visibility="private")
    demo.queue(default_concurrency_limit=UI_CONCURRENCY, max_size=service.settings.max_queue)
    # Gradio's own strings (upload prompt, Record/Stop, footer) in both languages. Set here, not through
    # mount_gradio_app(i18n=…): Gradio 6.31 sets that only after computing the config the page embeds.
    demo.i18n_instance = gradio_i18n()
    return demo
