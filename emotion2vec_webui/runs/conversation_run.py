"""The conversation part of the one recognise flow (``recognize.py`` calls it when ``speakers`` is not ``none``).

- :func:`decode_channels`: for ``speakers=channels``, each channel is decoded
  on its own, through the same guarded decoder as the mix, with the decoder's
  channel choice (``DecodeOptions.channels = "0"``, ``"1"`` …). Each decode
  holds one 16 kHz channel, so memory is bound by channels × duration at
  16 kHz, never by the file's own rate; at most
  ``engine.conversation.MAX_SPEAKER_CHANNELS`` channels are analysed.
- :func:`converse`: picks the models (the ASR and speaker models are resolved
  and loaded only when a run first asks for them) and runs
  :func:`engine.conversation.analyse_conversation`. On an install without
  PyTorch (an ONNX export served alone) ``speakers=channels`` runs — its VAD
  is ONNX (``engine.vad``) — while diarization (CAM++) and transcription
  (SenseVoice, Paraformer) need PyTorch and FunASR: :func:`check_torch_parts`
  refuses them first, naming what was asked for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging

from emotion2vec_webui.audio.decoder_pool import decode_guarded
from emotion2vec_webui.engine.conversation import (
    MAX_SPEAKER_CHANNELS,
    Conversation,
    ConversationOptions,
    analyse_conversation,
)
from emotion2vec_webui.errors import E2VError

log = logging.getLogger(__name__)


def decode_channels(source, source_name, decoded, limits, options, pool=None) -> list:
    """The 16 kHz signal of each channel of ``source`` (the mix's own signal for a mono file).

    Args:
        source: the path or bytes that gave ``decoded``.
        source_name: its name.
        decoded: the mix (tells the channel count).
        limits: the decode limits.
        options: the mix's ``DecodeOptions`` (its audio stream is kept).
        pool: the decoder pool to use (None: the shared guarded pool).
    """
    n = int(decoded.original_channels)
    if n < 2:
        return [decoded.waveform]
    out = []
    for i in range(min(n, MAX_SPEAKER_CHANNELS)):
        one = dataclasses.replace(options, channels=str(i))
        if pool is None:
            got = decode_guarded(source, source_name=source_name, limits=limits, options=one)
        else:
            got = pool.decode(source, source_name=source_name, limits=limits, options=one)
        out.append(got.waveform)
    return out


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # finds, does not import
    except ImportError:  # an import hook that refuses it (the ONNX-only tests) or a broken parent
        return False


def check_torch_parts(conv: ConversationOptions) -> None:
    """Raise ``bad_request`` naming the part asked for when it needs PyTorch and FunASR and they are missing."""
    wanted = []
    if conv.speakers == "auto":
        wanted.append((
            "Automatic speaker separation (speakers=auto, the CAM++ speaker model)",
            "自动区分说话人（speakers=auto，CAM++ 说话人模型）",
            "use speakers=channels for a recording with one speaker per channel",
            "每个声道一位说话人的录音可用 speakers=channels",
        ))  # fmt: skip
    if conv.transcribe:
        wanted.append(("Transcription (transcribe, the ASR model)", "转写（transcribe，语音识别模型）",
                       "analyse without transcription", "请不转写再分析"))  # fmt: skip
    if not wanted or (_installed("torch") and _installed("funasr")):
        return
    what, what_zh, instead, instead_zh = wanted[0]
    raise E2VError(
        "bad_request",
        f"{what} needs PyTorch and FunASR, which this ONNX-only install lacks; {instead}. / "
        f"{what_zh}需要 PyTorch 与 FunASR，此纯 ONNX 安装没有；{instead_zh}。",
    )


def converse(flow, decoded, engine) -> Conversation:
    """Speakers and turns for one recognition (``flow``: a :class:`recognize.Recognition`)."""
    from emotion2vec_webui.model.conversation_models import asr_model, speaker_model

    settings, options = flow.settings, flow.options
    conv = ConversationOptions(options.speakers, options.num_speakers, options.transcribe,
                               turn_frames=options.granularity == "frame")  # fmt: skip
    conv.check()
    check_torch_parts(conv)
    device = engine.info.device
    speaker = asr = None
    if conv.speakers == "auto":
        speaker = speaker_model(settings.speaker_model, settings.hub, device)
    if conv.transcribe:
        asr = asr_model(options.asr_model or settings.asr_model, settings.hub, device)
    channels = flow.channel_waveforms
    if conv.speakers == "channels":
        if channels is None:  # decoded elsewhere (not through Recognition.decode): the mix is one channel
            channels = [decoded.waveform]
        if decoded.original_channels > MAX_SPEAKER_CHANNELS:
            flow.runlog(f"warning: {decoded.original_channels} channels; the first {MAX_SPEAKER_CHANNELS} are speakers"
                        f" / 警告：{decoded.original_channels} 个声道，只有前 {MAX_SPEAKER_CHANNELS} 个作为说话人",
                        logging.WARNING)  # fmt: skip
    for name, name_zh, m in (("speaker model", "说话人模型", speaker), ("ASR model", "语音识别模型", asr)):
        if m is not None:
            model = f"{m.resolved.path.name} ({m.resolved.hub})"
            flow.runlog(f"{name}: {model}" + (" — random weights" if m.random_weights else "")
                        + f" / {name_zh}：{model}" + ("（随机权重）" if m.random_weights else ""))  # fmt: skip
    return analyse_conversation(
        engine, decoded.waveform, conv, channels=channels, speaker_model=speaker, asr_model=asr,
        window_s=settings.window_s, runlog=flow.runlog, smoothing_s=settings.frame_smoothing_s,
    )  # fmt: skip
