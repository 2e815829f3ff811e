"""Conversations: who spoke when, what they said, and how they felt, turn by turn.

A *turn* is one speaker's stretch of speech. Its emotion is emotion2vec's
utterance result on that turn's audio alone (the model was trained on
utterances). Speakers come from one of two sources:

- ``channels``: each channel of a multi-channel recording is one speaker (call
  centres put agent and customer on separate channels). Speech is found per
  channel with the VAD we already have (silero-vad, :mod:`vad`), and every
  speech segment of a channel is a turn of that channel's speaker
  (``left``/``right`` for stereo, ``ch1``, ``ch2`` … otherwise).
- ``auto``: diarization of the mono signal the way FunASR's own pipeline does
  it (``AutoModel(spk_model="cam++")``): speech segments → 1.5 s chunks with a
  0.75 s shift (``funasr.models.campplus.utils.sv_chunk``) → CAM++ embeddings
  → FunASR's clustering back-end (``ClusterBackend``: spectral clustering,
  UMAP+HDBSCAN or k-means by size, with an optional number of speakers) →
  FunASR's ``postprocess`` (merge, split overlaps at the midpoint, absorb
  sub-0.7 s pieces). Each diarized piece, cut to the speech segments, is a
  turn; speakers are ``S1``, ``S2`` … in order of first appearance.

With ``transcribe`` each turn's audio also goes through the ASR model
(SenseVoiceSmall by default); SenseVoice's own coarse emotion tag is kept as
``asr_emotion``, a second opinion beside emotion2vec's.

The models come in as objects (``model/conversation_models.py``); this module
knows nothing of files or hubs. Every stage is timed (``stage_s``: vad,
speaker, asr, emotion) for ``benchmarks/conversation.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH

SPEAKER_MODES = ("none", "channels", "auto")
MAX_SPEAKER_CHANNELS = 8  # channels mode analyses at most this many channels (each one is a speaker)
MIN_TURN_S = 0.2  # shorter pieces are not turns (too short for an utterance emotion)
NEGATIVE = ("angry", "disgusted", "fearful", "sad")  # "most negative turns": the largest sum of these scores
CHUNK_S, CHUNK_SHIFT_S = 1.5, 0.75  # FunASR's sv_chunk defaults, for the speaker embeddings


@dataclass(frozen=True)
class ConversationOptions:
    speakers: str = "none"  # none | channels | auto
    num_speakers: int | None = None  # auto: the number of speakers when known (None: estimated)
    transcribe: bool = False  # add each turn's text (ASR)

    def check(self) -> None:
        """Raise ``bad_request`` for an unknown mode or a bad speaker count."""
        if self.speakers not in SPEAKER_MODES:
            raise E2VError("bad_request", f"speakers must be one of {', '.join(SPEAKER_MODES)}, not {self.speakers!r}. "
                           f"/ speakers 必须是 {', '.join(SPEAKER_MODES)} 之一。")  # fmt: skip
        if self.num_speakers is not None and not (1 <= int(self.num_speakers) <= 32):
            raise E2VError("bad_request", "num_speakers must be between 1 and 32. / num_speakers 必须在 1 到 32 之间。")


@dataclass(frozen=True)
class Conversation:
    speakers: list[dict]  # result.json "speakers": one summary per speaker
    turns: list[dict]  # result.json "turns", in time order
    stage_s: dict[str, float] = field(default_factory=dict)  # seconds per stage: vad, speaker, asr, emotion


def channel_speaker_ids(n_channels: int) -> list[str]:
    """``left``/``right`` for stereo, ``ch1`` … ``chN`` otherwise."""
    return ["left", "right"] if n_channels == 2 else [f"ch{i + 1}" for i in range(n_channels)]


def analyse_conversation(
    engine,
    waveform: np.ndarray,
    options: ConversationOptions,
    *,
    channels: Sequence[np.ndarray] | None = None,
    speaker_model=None,
    asr_model=None,
    window_s: float = 30.0,
    runlog: Callable[[str], None] | None = None,
    vad: Callable[[np.ndarray], list[tuple[float, float]]] | None = None,
) -> Conversation:
    """Split a recording into speaker turns and classify each turn.

    Args:
        engine: a loaded :class:`engine.EmotionEngine` (the turn emotions).
        waveform: the 16 kHz mono mix (``auto``).
        options: speakers mode, number of speakers, transcription.
        channels: the 16 kHz signal of each channel (``channels`` mode).
        speaker_model: a :class:`model.conversation_models.SpeakerModel` (``auto``).
        asr_model: a :class:`model.conversation_models.AsrModel` (``transcribe``).
        window_s: turns longer than this are classified in windows.
        runlog: the run's processing log, if any.
        vad: speech segmenter (default: silero-vad, :func:`vad.speech_segments`).

    Raises:
        E2VError: ``bad_request`` (unknown mode; ``channels`` without channels).
    """
    options.check()
    if vad is None:
        from emotion2vec_webui.engine.vad import speech_segments as vad
    stage = {"vad": 0.0, "speaker": 0.0, "asr": 0.0, "emotion": 0.0}
    pieces: list[tuple[str, float, float, np.ndarray]] = []  # (speaker, start, end, the signal it is cut from)
    if options.speakers == "channels":
        if not channels:
            raise E2VError("bad_request", "speakers=channels needs the file's channels. / 需要多声道音频。")
        names = channel_speaker_ids(len(channels))
        for name, signal in zip(names, channels, strict=True):
            t = time.perf_counter()
            spans = vad(signal)
            stage["vad"] += time.perf_counter() - t
            pieces += [(name, s, e, signal) for s, e in spans]
        speaker_names = names
    elif options.speakers == "auto":
        t = time.perf_counter()
        spans = vad(waveform)
        stage["vad"] += time.perf_counter() - t
        t = time.perf_counter()
        labelled = diarize(waveform, spans, speaker_model, options.num_speakers)
        stage["speaker"] += time.perf_counter() - t
        pieces = [(f"S{label + 1}", s, e, waveform) for s, e, label in labelled]
        speaker_names = [f"S{i + 1}" for i in range(max((lab for _, _, lab in labelled), default=-1) + 1)]
    else:
        return Conversation([], [], stage)
    pieces = [p for p in pieces if p[2] - p[1] >= MIN_TURN_S]
    pieces.sort(key=lambda p: (p[1], p[2]))
    audio = [sig[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)] for _, s, e, sig in pieces]

    turns = []
    t = time.perf_counter()
    for (speaker, s, e, _), chunk in zip(pieces, audio, strict=True):
        r = engine.recognize(chunk, "utterance", False, window_s=window_s)
        turns.append({
            "index": len(turns), "speaker": speaker, "start_s": round(s, 3), "end_s": round(e, 3),
            "emotion": r.emotion, "emotion_zh": EMOTIONS_ZH[r.emotion], "confidence": round(r.confidence, 6),
            "scores": {k: round(r.scores[k], 6) for k in EMOTIONS},
        })  # fmt: skip
    stage["emotion"] += time.perf_counter() - t
    if options.transcribe:
        if asr_model is None:
            raise E2VError("internal_error", "transcribe needs an ASR model. / 转写需要语音识别模型。")
        t = time.perf_counter()
        for turn, tr in zip(turns, asr_model.transcribe(audio), strict=True):
            turn["text"] = tr.text
            turn["language"] = tr.language
            turn["asr_emotion"] = tr.asr_emotion
        stage["asr"] += time.perf_counter() - t
    speakers = speaker_summaries(turns, speaker_names, options.speakers)
    if runlog is not None:
        runlog(
            f"conversation ({options.speakers}): {len(speakers)} speaker(s), {len(turns)} turn(s); "
            + ", ".join(f"{k} {v:.2f} s" for k, v in stage.items())
        )
    return Conversation(speakers, turns, {k: round(v, 4) for k, v in stage.items()})


def diarize(
    waveform: np.ndarray, spans: list[tuple[float, float]], speaker_model, num_speakers: int | None
) -> list[tuple[float, float, int]]:
    """``[(start_s, end_s, label), …]`` in time order, labels 0, 1 … by first appearance, cut to ``spans``.

    FunASR's recipe (chunks, CAM++ embeddings, ``ClusterBackend``, ``postprocess``); see the module docstring.
    """
    from funasr.models.campplus.cluster_backend import ClusterBackend, KMeansCluster
    from funasr.models.campplus.utils import postprocess, sv_chunk

    if not spans:
        return []
    vad_segments = [[s, e, waveform[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]] for s, e in spans]
    chunks = sv_chunk(vad_segments)
    if speaker_model is None:
        raise E2VError("internal_error", "speakers=auto needs a speaker model. / 自动区分说话人需要说话人模型。")
    emb = speaker_model.embed([c[2] for c in chunks])
    k = int(num_speakers) if num_speakers else None
    if k is not None and k > 1 and len(chunks) < 20:  # the back-end answers one speaker below 20 chunks
        labels = np.asarray(KMeansCluster()(emb, min(k, len(chunks))))
    else:
        labels = np.asarray(ClusterBackend()(emb, oracle_num=k)) if k else np.asarray(ClusterBackend()(emb))
    pieces = postprocess([[c[0], c[1]] for c in chunks], None, labels, emb)
    out = []
    for s, e, label in pieces:  # cut to the speech: silence between segments belongs to nobody
        for vs, ve in spans:
            lo, hi = max(s, vs), min(e, ve)
            if hi - lo > 0:
                out.append((float(lo), float(hi), int(label)))
    out.sort()
    order: dict[int, int] = {}
    for _, _, label in out:
        order.setdefault(label, len(order))
    return [(s, e, order[label]) for s, e, label in out]


def speaker_summaries(turns: list[dict], names: list[str], mode: str) -> list[dict]:
    """result.json ``speakers``: per speaker, speaking time, the share of it per emotion, the most negative turns."""
    total = sum(t["end_s"] - t["start_s"] for t in turns) or 1.0
    out = []
    for i, name in enumerate(names):
        mine = [t for t in turns if t["speaker"] == name]
        speaking = sum(t["end_s"] - t["start_s"] for t in mine)
        share = {k: 0.0 for k in EMOTIONS}
        for t in mine:
            share[t["emotion"]] += (t["end_s"] - t["start_s"]) / (speaking or 1.0)
        negative = sorted(mine, key=lambda t: -sum(t["scores"][k] for k in NEGATIVE))[:3]
        out.append({
            "id": name, "label": name, "channel": i if mode == "channels" else None,
            "turns": len(mine), "speaking_s": round(speaking, 3), "speaking_share": round(speaking / total, 4),
            "emotion_share": {k: round(v, 4) for k, v in share.items()},
            "dominant_emotion": max(share, key=share.get) if mine else None,
            "most_negative_turns": [t["index"] for t in negative],
        })  # fmt: skip
    return out
