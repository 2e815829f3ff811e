"""The recognition options as Gradio controls, built from their one definition (``options.py``).

The Batch and Conversation tabs offer what ``POST /api/v1/recognize`` takes
(issue 27): segmentation, channels, the audio stream, speakers, the ASR model;
and the Batch tab what ``batch --label-set`` takes. Their choices come from
:mod:`emotion2vec_webui.options` (values, defaults, bounds and labels) and
:mod:`emotion2vec_webui.label_sets` (the benchmark label sets), never from a
list written here, so a value added there reaches every tab. Call these inside ``gr.Blocks``.
"""

from __future__ import annotations

from emotion2vec_webui.label_sets import LABEL_SETS
from emotion2vec_webui.labels import bilingual
from emotion2vec_webui.options import (
    ASR_MODEL_NAMES,
    AUDIO_STREAM,
    CHANNEL_NAMES,
    GRANULARITY,
    NUM_SPEAKERS,
    SEGMENTATION,
    SPEAKERS,
    Choice,
)

SERVER_ASR = ""  # the ASR dropdown's "server default" (E2V_ASR_MODEL): RecognizeOptions reads "" as not given
NO_LABEL_SET = ""  # the label-set dropdown's "none": the batch is scored on the nine classes only


def menu(choice: Choice, *, leave_out: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``[("中文 / English", value)]`` for ``choice``'s values, but ``leave_out``."""
    return [(choice.label(v), v) for v in choice.values if v not in leave_out]


def granularity_radio(elem_id: str):
    import gradio as gr

    return gr.Radio(menu(GRANULARITY), value=GRANULARITY.default, label=bilingual("Granularity", "粒度"),
                    elem_id=elem_id)  # fmt: skip


def segmentation_radio(elem_id: str):
    import gradio as gr

    return gr.Radio(menu(SEGMENTATION), value=SEGMENTATION.default, label=bilingual("Segments", "分段"),
                    info="VAD：在停顿处切分，每句话单独识别 / split at pauses, one emotion per phrase",
                    elem_id=elem_id)  # fmt: skip


def channels_dropdown(elem_id: str):
    import gradio as gr

    return gr.Dropdown(menu(CHANNEL_NAMES), value=CHANNEL_NAMES.default, allow_custom_value=True,  # an index: 0, 1 …
                       label=bilingual("Channels", "声道"),
                       info="立体声：混合、取一个声道或输入序号 0、1… / stereo: mix, one channel, or type an index",
                       elem_id=elem_id)  # fmt: skip


def audio_stream_number(elem_id: str):
    import gradio as gr

    return gr.Number(value=None, precision=0, minimum=AUDIO_STREAM.low, maximum=AUDIO_STREAM.high, elem_id=elem_id,
                     label=bilingual("Audio stream (videos; empty: the first)", "音频流（视频；留空为第一个）"))  # fmt: skip


def speakers_radio(elem_id: str, *, leave_out: tuple[str, ...] = (), value: str | None = None):
    import gradio as gr

    return gr.Radio(menu(SPEAKERS, leave_out=leave_out), value=value or SPEAKERS.default,
                    label=bilingual("Speakers", "说话人"), elem_id=elem_id)  # fmt: skip


def num_speakers_number(elem_id: str):
    import gradio as gr

    return gr.Number(value=None, precision=0, minimum=0, maximum=NUM_SPEAKERS.high, elem_id=elem_id,
                     label=bilingual("Number of speakers (auto; 0: estimate)", "说话人数（自动模式；0 表示自动估计）"))  # fmt: skip


def asr_model_dropdown(elem_id: str, server_default: str):
    """The transcript's ASR model: the server's (``E2V_ASR_MODEL``), a known name, or a hub id / directory typed in."""
    import gradio as gr

    choices = [(bilingual(f"Server default ({server_default})", f"服务器默认（{server_default}）"), SERVER_ASR)]
    return gr.Dropdown(choices + [(name, name) for name in ASR_MODEL_NAMES], value=SERVER_ASR, allow_custom_value=True,
                       label=bilingual("ASR model (transcript)", "语音识别模型（转写）"), elem_id=elem_id)  # fmt: skip


def label_set_dropdown(elem_id: str):
    """``batch --label-set``: score the batch on a benchmark label set too (label_sets.py's sets, or none)."""
    import gradio as gr

    choices = [(bilingual("None (the nine classes)", "不使用（九类）"), NO_LABEL_SET)]
    for name, ls in LABEL_SETS.items():
        dataset = ls.title.partition(",")[0]  # "IEMOCAP, 4 classes" → IEMOCAP
        choices.append((bilingual(f"{ls.title} ({name})", f"{dataset} {len(ls.classes)} 类（{name}）"), name))
    return gr.Dropdown(choices, value=NO_LABEL_SET, label=bilingual("Benchmark label set", "基准标签集"),
                       info="按公开基准的标签集另行计分（UA/WA/F1）/ also score the way published tables do "
                       "(references mapped into the set, others dropped)", elem_id=elem_id)  # fmt: skip


def speaker_count(value) -> int | None:
    """A Number's speaker count as RecognizeOptions takes it: empty or 0 → None (estimate); the rest is checked there."""
    return value if value not in (None, "", 0) else None
