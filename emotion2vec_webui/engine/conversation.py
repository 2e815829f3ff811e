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
  with an optional number of speakers; above :data:`MAX_CLUSTER_CHUNKS`
  chunks an evenly spaced sample is clustered and the rest join the nearest
  cluster centre, so the stage stays linear in duration) →
  FunASR's ``postprocess`` (merge, split overlaps at the midpoint, absorb
  sub-0.7 s pieces). Each diarized piece, cut to the speech segments, is a
  turn; speakers are ``S1``, ``S2`` … in order of first appearance.

With ``turn_frames`` each turn also keeps its frame-level scores (``frames``:
the nine classes every 20 ms, smoothed like the whole file's timeline). They
come from the same forward pass as the turn's emotion: the utterance result is
the head on the mean of the turn's frame features, the track is the same head
on each frame (``granularity="frame"``), so no second model pass is needed.

With ``transcribe`` each turn's audio also goes through the ASR model
(SenseVoiceSmall by default); SenseVoice's own coarse emotion tag is kept as
``asr_emotion``, a second opinion beside emotion2vec's.

Why text is transcribed per turn, not cut from sentence timestamps: a turn
already is a sentence-sized unit. Every turn lies inside one speech segment
(``channels``: a turn *is* a segment; ``auto``: diarized pieces are cut to the
segments), and the VAD splits segments longer than 10 s at their longest
pause (``vad.MAX_SEGMENT_S``). That is how FunASR's own pipeline makes
SenseVoice's sentences (``AutoModel(vad_model=…)``: VAD segment → ASR per
segment; ``sentence_info`` comes from the punctuation model for Paraformer).
The finer stamps the ASR models can give — SenseVoice's CTC word stamps
(``output_timestamp``), Paraformer's CIF token stamps — would only move
words inside a cue of at most 10 s, and a turn's audio given to the ASR on
its own cannot pick up words of the neighbouring speaker, which cutting one
long transcript by time could.

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
from emotion2vec_webui.engine.timeline import HOP_S, frame_scores
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.options import NUM_SPEAKERS, SPEAKERS

SPEAKER_MODES = SPEAKERS.values  # options.py, the one definition
MAX_SPEAKER_CHANNELS = 8  # channels mode analyses at most this many channels (each one is a speaker)
MIN_TURN_S = 0.2  # shorter pieces are not turns (too short for an utterance emotion)
NEGATIVE = ("angry", "disgusted", "fearful", "sad")  # "most negative turns": the largest sum of these scores
CHUNK_S, CHUNK_SHIFT_S = 1.5, 0.75  # FunASR's sv_chunk defaults, for the speaker embeddings
MAX_CLUSTER_CHUNKS = 1000  # more chunks (~12.5 min of speech): cluster a sample, the rest join its nearest centre
KMEANS_SEED = 0  # the spectral clustering's k-means seed (FunASR's own KMeansCluster uses random_state=0 too)
STAGE_ZH = {"vad": "语音检测", "speaker": "说话人", "asr": "语音识别", "emotion": "情感"}  # run.log's Chinese half


@dataclass(frozen=True)
class ConversationOptions:
    speakers: str = "none"  # none | channels | auto
    num_speakers: int | None = None  # auto: the number of speakers when known (None: estimated)
    transcribe: bool = False  # add each turn's text (ASR)
    turn_frames: bool = False  # keep each turn's frame-level scores (turns[].frames; the run's granularity=frame)

    def check(self) -> None:
        """Raise ``bad_request`` for an unknown mode or a bad speaker count."""
        SPEAKERS.check(self.speakers)  # the texts of options.py
        NUM_SPEAKERS.check(self.num_speakers)


@dataclass(frozen=True)
class Conversation:
    speakers: list[dict]  # result.json "speakers": one summary per speaker
    turns: list[dict]  # result.json "turns", in time order
    stage_s: dict[str, float] = field(default_factory=dict)  # seconds per stage: vad, speaker, asr, emotion
    speaker_s: dict[str, float] = field(default_factory=dict)  # auto: seconds in embed / cluster, and chunks


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
    smoothing_s: float = 0.5,
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
        smoothing_s: the moving average of the turns' frame tracks (``turn_frames``; ``E2V_FRAME_SMOOTHING_S``).

    Raises:
        E2VError: ``bad_request`` (unknown mode; ``channels`` without channels).
    """
    options.check()
    if vad is None:
        from emotion2vec_webui.engine.vad import speech_segments as vad
    stage = {"vad": 0.0, "speaker": 0.0, "asr": 0.0, "emotion": 0.0}
    split: dict[str, float] = {}
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
        labelled = diarize(waveform, spans, speaker_model, options.num_speakers, timing=split)
        stage["speaker"] += time.perf_counter() - t
        pieces = [(f"S{label + 1}", s, e, waveform) for s, e, label in labelled]
        speaker_names = [f"S{i + 1}" for i in range(max((lab for _, _, lab in labelled), default=-1) + 1)]
    else:
        return Conversation([], [], stage)
    pieces = [p for p in pieces if p[2] - p[1] >= MIN_TURN_S]
    pieces.sort(key=lambda p: (p[1], p[2]))
    audio = [sig[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)] for _, s, e, sig in pieces]

    from emotion2vec_webui.engine.batching import recognize_each

    turns = []
    t = time.perf_counter()
    # every turn at once: a server job's engine queues them together and the scheduler batches them by length
    granularity = "frame" if options.turn_frames else "utterance"  # frame: the head on each frame too, same pass
    for (speaker, s, e, _), r in zip(pieces, recognize_each(engine, audio, granularity, window_s=window_s), strict=True):
        turns.append({
            "index": len(turns), "speaker": speaker, "start_s": round(s, 3), "end_s": round(e, 3),
            "emotion": r.emotion, "emotion_zh": EMOTIONS_ZH[r.emotion], "confidence": round(r.confidence, 6),
            "scores": {k: round(r.scores[k], 6) for k in EMOTIONS},
        })  # fmt: skip
        if options.turn_frames and getattr(r, "frame_logits", None) is not None:
            turns[-1]["frames"] = turn_frames(r.frame_logits, smoothing_s)
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
            + f" / 对话（{options.speakers}）：{len(speakers)} 位说话人，{len(turns)} 个话轮；"
            + "，".join(f"{STAGE_ZH.get(k, k)} {v:.2f} 秒" for k, v in stage.items())
        )
    return Conversation(speakers, turns, {k: round(v, 4) for k, v in stage.items()},
                        {k: round(v, 4) for k, v in split.items()})  # fmt: skip


def turn_frames(frame_logits: np.ndarray, smoothing_s: float) -> dict:
    """result.json ``turns[].frames``: a turn's smoothed frame scores (``[T, 9]``, 4 decimals) and their hop.

    Frame ``i`` covers ``start_s + i * hop_s`` onwards; the rows are the nine classes in ``labels.EMOTIONS`` order.
    """
    probs = frame_scores(np.asarray(frame_logits, dtype=np.float64), smoothing_s, HOP_S)
    return {"hop_s": HOP_S, "smoothing_s": smoothing_s, "scores": np.round(probs, 4).tolist()}


def diarize(
    waveform: np.ndarray, spans: list[tuple[float, float]], speaker_model, num_speakers: int | None,
    timing: dict[str, float] | None = None,
) -> list[tuple[float, float, int]]:
    """``[(start_s, end_s, label), …]`` in time order, labels 0, 1 … by first appearance, cut to ``spans``.

    FunASR's recipe (chunks, CAM++ embeddings, ``ClusterBackend``, ``postprocess``); see the module docstring.
    Linear in the number of chunks: the clustering is bounded (:func:`cluster_chunks`), and the cut to the
    speech spans walks both time-ordered lists once. ``timing``, when given, gets the seconds spent in
    ``embed`` (chunking and CAM++) and ``cluster`` (clustering, FunASR's post-processing and the cut), and
    the number of ``chunks``.
    """
    from funasr.models.campplus.utils import postprocess, sv_chunk

    if not spans:
        return []
    vad_segments = [[s, e, waveform[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]] for s, e in spans]
    if speaker_model is None:
        raise E2VError("internal_error", "speakers=auto needs a speaker model. / 自动区分说话人需要说话人模型。")
    t0 = time.perf_counter()
    chunks = sv_chunk(vad_segments)
    emb = speaker_model.embed([c[2] for c in chunks])
    t1 = time.perf_counter()
    labels = cluster_chunks(emb, num_speakers)
    pieces = postprocess([[c[0], c[1]] for c in chunks], None, labels, emb)
    out = _cut_to_spans(sorted((float(s), float(e), int(lab)) for s, e, lab in pieces), sorted(spans))
    order: dict[int, int] = {}
    for _, _, label in out:
        order.setdefault(label, len(order))
    if timing is not None:
        timing["embed"] = timing.get("embed", 0.0) + t1 - t0
        timing["cluster"] = timing.get("cluster", 0.0) + time.perf_counter() - t1
        timing["chunks"] = timing.get("chunks", 0) + len(chunks)
    return [(s, e, order[label]) for s, e, label in out]


def cluster_chunks(emb: np.ndarray, num_speakers: int | None, cap: int | None = None) -> np.ndarray:
    """One speaker label per chunk embedding, through FunASR's clustering back-end, in bounded time.

    FunASR's ``ClusterBackend`` clusters every chunk spectrally below 2,048 chunks: an N×N cosine affinity,
    a sort of every row and a full eigendecomposition, O(N²) memory and O(N³) time in the number of 0.75 s
    chunks. Up to ``cap`` chunks (:data:`MAX_CLUSTER_CHUNKS`) that is what runs, unchanged. Above it, an
    evenly spaced sample of ``cap`` chunks is clustered the same way and every other chunk joins the sample
    cluster whose mean direction is nearest (cosine): O(N·K) for the rest, so the stage stays linear and
    the back-end's UMAP+HDBSCAN branch (above 2,048 chunks without a speaker count) is never reached.
    Deterministic: the spectral clustering's k-means is seeded (:func:`_seeded_backend`), so one input
    always gives the same labels, and numpy's global generator is neither read nor changed.
    """
    from funasr.models.campplus.cluster_backend import KMeansCluster

    cap = MAX_CLUSTER_CHUNKS if cap is None else cap
    k = int(num_speakers) if num_speakers else None
    n = len(emb)

    def backend(x: np.ndarray) -> np.ndarray:
        if k is not None and k > 1 and len(x) < 20:  # the back-end answers one speaker below 20 chunks
            return np.asarray(KMeansCluster()(x, min(k, len(x))))
        return np.asarray(_seeded_backend()(x, oracle_num=k) if k else _seeded_backend()(x))

    if n <= cap:
        return backend(emb)
    sample = np.unique(np.linspace(0, n - 1, cap).round().astype(int))
    sample_labels = backend(emb[sample])
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ids = np.unique(sample_labels)
    centres = np.stack([unit[sample][sample_labels == i].mean(0) for i in ids])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    labels = ids[np.argmax(unit @ centres.T, axis=1)]
    labels[sample] = sample_labels  # the sample keeps the back-end's own answer
    return labels


def _seeded_backend():
    """FunASR's ``ClusterBackend`` whose spectral clustering seeds its k-means with :data:`KMEANS_SEED`.

    FunASR's ``SpectralCluster.cluster_embs`` calls ``k_means(emb, k)`` without a ``random_state``, so
    it draws its initial centres from numpy's global generator: the same file could give other speakers
    and turn counts from one run to the next. This instance's spectral clustering is a subclass that
    passes the seed (a local ``RandomState``); nothing global is patched. The rest (affinity, pruning,
    eigen-gap, ``merge_by_cos``) is FunASR's own.
    """
    from funasr.models.campplus.cluster_backend import ClusterBackend, SpectralCluster
    from sklearn.cluster import k_means

    class SeededSpectralCluster(SpectralCluster):
        def cluster_embs(self, emb, k):
            return k_means(emb, k, random_state=KMEANS_SEED)[1]

    backend = ClusterBackend()
    backend.spectral_cluster = SeededSpectralCluster()
    return backend


def _cut_to_spans(pieces: list[tuple[float, float, int]], spans: list[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """The parts of time-ordered diarized ``pieces`` inside the time-ordered speech ``spans`` (one merge walk).

    Silence between speech segments belongs to nobody. FunASR's pieces touch but do not overlap (overlaps
    are split at their midpoint), and the VAD's spans do not overlap, so a span left behind by the walk is
    never needed again.
    """
    out = []
    j = 0
    for s, e, label in pieces:
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        i = j
        while i < len(spans) and spans[i][0] < e:
            lo, hi = max(s, spans[i][0]), min(e, spans[i][1])
            if hi - lo > 0:
                out.append((lo, hi, label))
            i += 1
    out.sort()
    return out


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
