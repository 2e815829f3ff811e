"""The one recognise flow: decode → classify → result.json → run folder.

Every face goes through :class:`Recognition`: the Recognize tab and the Live
tab (through :class:`service.Service`), REST, the CLI and batch. A face that
decodes in one thread and classifies in another (REST, batch) calls the two
steps, :meth:`Recognition.decode` and :meth:`Recognition.finish`, itself;
the others call :meth:`Recognition.run`. Batch classifies a group of clips
in one batched engine call and hands each clip's answer to ``finish``, which
then only assembles and writes. None of the faces touches FunASR or writes
run files themselves.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from emotion2vec_webui import __version__
from emotion2vec_webui import options as opt
from emotion2vec_webui.audio.decode import AudioLimits, DecodedAudio
from emotion2vec_webui.audio.decoder_pool import decode_guarded
from emotion2vec_webui.audio.format import DecodeOptions
from emotion2vec_webui.config import Settings
from emotion2vec_webui.engine.calibration import calibrate_result
from emotion2vec_webui.engine.call_summary import summary_for_result
from emotion2vec_webui.engine.engine import EmotionEngine
from emotion2vec_webui.engine.result import EmotionResult
from emotion2vec_webui.engine.timeline import HOP_S, frame_scores, segments, softmax
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.runs.catalog.run_index import record_run_folder
from emotion2vec_webui.runs.confidence import CalibratedEngine, load_calibration, mark_uncertain, nine_class
from emotion2vec_webui.runs.frames_csv import round_significant
from emotion2vec_webui.runs.inputs.url_fetch import AudioUrl, Fetched, FetchPolicy, fetch_url
from emotion2vec_webui.runs.run_log import RunLog, log_input
from emotion2vec_webui.runs.storage import RunFolder, iso_timestamp, now_local, write_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecognizeOptions:
    """What one recognition is asked for, checked when built (``__post_init__``): before any decode, download or model.

    Each field's values and bounds are defined once in :mod:`emotion2vec_webui.options`; text from a form is
    accepted (``"frame"``, ``" 2 "``, ``"true"``) and normalised, anything else raises ``bad_request``.
    """

    granularity: str = opt.GRANULARITY.default  # options.GRANULARITY
    extract_embedding: bool = True  # write embedding.npy
    segmentation: str = opt.SEGMENTATION.default  # options.SEGMENTATION: runs of frame emotions, or one utterance per speech segment
    channels: str = opt.CHANNEL_NAMES.default  # mix | left | right | a channel index 0-255 (options.normalise_channels)
    audio_stream: int | None = None  # which audio stream of a video or multi-stream file (options.AUDIO_STREAM; None: the first)
    head: str | None = None  # a trained head (E2V_HEADS_DIR/<name>, engine/heads.py): result.json's "head" block
    # Conversations (issue 20; runs/conversation_run.py): result.json "speakers"/"turns", transcript.srt/.vtt, turns.csv
    speakers: str = opt.SPEAKERS.default  # options.SPEAKERS: none | channels (one speaker per channel) | auto (diarization)
    num_speakers: int | None = None  # auto: the number of speakers when known (options.NUM_SPEAKERS)
    transcribe: bool = False  # each turn's text (ASR)
    asr_model: str | None = None  # ASR model name, hub id or directory (None: E2V_ASR_MODEL)
    calibration: str | None = None  # a saved calibration (calibrate; runs/confidence.py): calibrated scores
    min_confidence: float | None = None  # abstention: below it a result is "uncertain" (options.MIN_CONFIDENCE)

    def __post_init__(self) -> None:
        """The one check of every option (whisper's ``_verify_options``); ``bad_request`` naming the field."""
        checked = {
            "granularity": opt.GRANULARITY.check(self.granularity),
            "extract_embedding": opt.parse_bool(self.extract_embedding, "extract_embedding", True),
            "segmentation": opt.SEGMENTATION.check(self.segmentation),
            "channels": opt.normalise_channels(self.channels),
            "audio_stream": opt.AUDIO_STREAM.check(self.audio_stream),
            "head": opt.check_head_name(self.head),
            "speakers": opt.SPEAKERS.check(self.speakers),
            "num_speakers": opt.NUM_SPEAKERS.check(self.num_speakers),
            "transcribe": opt.parse_bool(self.transcribe, "transcribe", False),
            "asr_model": opt.check_model_name(self.asr_model),
            "calibration": opt.check_calibration_name(self.calibration),
            "min_confidence": opt.check_min_confidence(self.min_confidence),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def decode_options(self) -> DecodeOptions:
        """The stream and channel choice (already checked)."""
        return DecodeOptions(self.channels, self.audio_stream)


@dataclass(frozen=True)
class RunOutcome:
    run: RunFolder | None  # the run folder (None when not written)
    result: dict  # the result.json object
    log_text: str  # the processing log, as in run.log
    engine_result: EmotionResult  # scores and arrays, for callers that need them
    decode_s: float = 0.0  # seconds decoding and resampling
    inference_s: float = 0.0  # seconds in the model
    write_s: float = 0.0  # seconds writing the run folder


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class Recognition:
    """One recognition, from an input to its run folder.

    Args:
        settings: limits, output folder, smoothing and window settings.
        options: granularity, embedding, segmentation.
        request_id: ties run.log to the server log (a new one when None).
        write: write the run folder (False: only the result).
        count_wait: ``processing_time_s`` includes the wait between decoding and classifying (a server's
            queue); batch passes False, so each run reports its own work only (decode, inference, assembly).
    """

    def __init__(
        self,
        settings: Settings,
        options: RecognizeOptions = RecognizeOptions(),
        *,
        request_id: str | None = None,
        write: bool = True,
        count_wait: bool = True,
    ) -> None:
        self.settings = settings
        self.options = options
        self.request_id = request_id or new_request_id()
        self.write = write
        self.count_wait = count_wait
        self.runlog = RunLog(self.request_id)
        self.started = time.perf_counter()
        self.started_at = datetime.now()  # wall clock of ``started``, for run.log
        self.decode_wall_s: float | None = None  # decode call, start to end (a worker's round trip included)
        self.decoded_at: datetime | None = None
        self.fetched: Fetched | None = None  # set when the input was an AudioUrl
        self.channel_waveforms: list | None = None  # speakers=channels: each channel, decoded apart
        self.progress: Callable[[float, str], None] | None = None  # (fraction done, bilingual step): a UI's bar
        self.windows = 0  # long audio: how many windows the engine analysed it in (0: one pass)
        self.window = 0  # long audio: the window being analysed (1…windows), for a face's own progress line
        self.eta_s: float | None = None  # long audio: seconds left at the windows' pace so far (None: not known yet)
        self._first_window_at: float | None = None  # when window 1 started (the ETA's pace)
        self.extra_result: dict = {}  # more top-level result.json keys (a live stream's "stream" block)

    def decode(self, source, source_name: str | None = None, pool=None) -> DecodedAudio:
        """Decode a path, bytes or an :class:`AudioUrl` (downloaded first) into the 16 kHz mono signal.

        Untrusted bytes are decoded in a guarded worker process (``audio/decoder_pool.py``):
        a decoder crash or a memory or time limit becomes an error for this input only.

        Args:
            source: a path, bytes, an :class:`AudioUrl` or a :class:`Fetched` download.
            source_name: the name for messages and result.json.
            pool: a :class:`DecoderPool` to decode in (batch); None: the shared guarded pool.

        Raises:
            AudioError: the input cannot be used (nothing is written).
            E2VError: ``url_*`` / ``file_too_large`` for a URL that cannot be fetched; ``bad_request``.
        """
        self.started = time.perf_counter()
        self.started_at = datetime.now()
        limits = AudioLimits.from_settings(self.settings)
        options = self.options.decode_options()
        if isinstance(source, AudioUrl):  # downloaded here (url_fetch.py), then decoded like an upload
            source = fetch_url(source.url, FetchPolicy.from_settings(self.settings))
        if isinstance(source, Fetched):  # the server's faces download first, under their own bound
            self.fetched = source
            source, source_name = source.data, source_name or source.name
        if pool is None:
            decoded = decode_guarded(source, source_name=source_name, limits=limits, options=options)
        else:
            decoded = pool.decode(source, source_name=source_name, limits=limits, options=options)
        self.decode_wall_s = time.perf_counter() - self.started
        self.decoded_at = datetime.now()
        if self.options.speakers == "channels":  # each channel on its own (runs/conversation_run.py)
            from emotion2vec_webui.runs.conversation_run import decode_channels

            self.channel_waveforms = decode_channels(source, source_name, decoded, limits, options, pool)
        return decoded

    def run(self, source, execute: Callable, source_name: str | None = None) -> RunOutcome:
        """Decode here, then classify and write through ``execute(fn)``, which calls ``fn(engine)``.

        ``execute`` is ``service.call`` in the server (the inference queue) or
        ``lambda fn: fn(engine)`` where the engine is at hand.
        """
        decoded = self.decode(source, source_name)
        seconds = len(decoded.waveform) / decoded.sample_rate
        self.report(0.3, f"已解码 {seconds:.1f} 秒，识别中 / decoded {seconds:.1f} s, classifying")
        return execute(lambda engine: self.finish(decoded, engine))

    def report(self, fraction: float, step: str) -> None:
        """Tell ``progress`` (when set) how far the run is; a failing callback never fails the run."""
        if self.progress is not None:
            try:
                self.progress(fraction, step)
            except Exception:  # a closed page, say
                pass

    def window_started(self, k: int, n: int) -> None:
        """The engine's ``on_window``: long audio is analysed in windows; window ``k`` of ``n`` starts.

        From the second window on, the step carries an ETA: the windows so far, at their mean pace.
        """
        now = time.perf_counter()
        if k == 1 or self._first_window_at is None:
            self._first_window_at = now
        self.window, self.windows, self.eta_s = k, n, None
        step = f"分析第 {k}/{n} 个窗口 / window {k} of {n}"
        if k > 1:
            left = self.eta_s = (now - self._first_window_at) / (k - 1) * (n - k + 1)
            eta = f"{int(left // 60)}:{int(left % 60):02d}"
            step = f"分析第 {k}/{n} 个窗口，约剩 {eta} / window {k} of {n}, about {eta} left"
        self.report(0.3 + 0.6 * (k - 1) / n, step)

    def finish(self, decoded: DecodedAudio, engine: EmotionEngine, answer: EmotionResult | None = None) -> RunOutcome:
        """Classify ``decoded`` (unless a batched call already gave its ``answer``), assemble and write."""
        return _finish(self, decoded, engine, answer)


HEAD_ONLY_WARNING = (
    "This model has no nine-class head: the nine scores are uniform placeholders; read the \"head\" block. / "
    "该模型没有九类情感分类头:九类得分仅为占位,请看 head 结果。"
)


def _load_head(options: RecognizeOptions, settings: Settings, engine: EmotionEngine):
    """The trained head ``options.head`` checked against ``engine``'s backbone, or None.

    Raises:
        E2VError: ``bad_request`` when the model is head-only (no nine-class head) and no head is given.
    """
    if not options.head:
        if getattr(engine, "head_only", False):
            raise E2VError(
                "bad_request",
                f"The model {engine.info.name} has no nine-class head (e.g. emotion2vec_base): pick a trained head "
                "(--head NAME, \"head\" on the API, the head picker in the UI). / 该模型没有九类情感分类头,"
                "请选择一个自训练的分类头。",
            )
        return None
    from emotion2vec_webui.runs.exported_extras import exported_head
    from emotion2vec_webui.runs.stores.head_store import load_for_engine

    return exported_head(engine, options.head) or load_for_engine(settings.heads_dir, options.head, engine)


def _finish(flow: Recognition, decoded: DecodedAudio, engine: EmotionEngine, answer: EmotionResult | None) -> RunOutcome:
    settings, options, runlog, request_id = flow.settings, flow.options, flow.runlog, flow.request_id
    finish_started = time.perf_counter()
    when = now_local()
    info = engine.info
    decoded_here = flow.decoded_at is not None  # decoded through this flow: its lines carry their real times
    log_input(runlog, decoded, __version__, started_at=flow.started_at if decoded_here else None,
              decoded_at=flow.decoded_at, decode_wall_s=flow.decode_wall_s if decoded_here else None,
              fetched=flow.fetched)  # fmt: skip
    weights = (" — random weights", "，随机权重") if info.random_weights else ("", "")
    runlog(f"model: {info.name} on {info.device} ({info.dtype}){weights[0]} / "
           f"模型：{info.name}，{info.device}（{info.dtype}）{weights[1]}")  # fmt: skip
    head = _load_head(options, settings, engine)  # not_found / head_mismatch before any inference
    calibration, head = load_calibration(options, settings, engine, head)  # a head's calibration: folded into it
    if nine_class(calibration) is not None:  # the nine classes' answers, segments and turns: calibrated
        engine = CalibratedEngine(engine, calibration)
        answer = calibrate_result(answer, calibration) if answer is not None else None
    if calibration is not None:
        runlog(f"calibration {calibration.name} ({calibration.target}, T {calibration.temperature:.3f}) / "
               f"校准 {calibration.name}（{calibration.target}，T {calibration.temperature:.3f}）")  # fmt: skip
    want_embedding = options.extract_embedding or head is not None  # a head reads the features
    if answer is None or (head is not None and answer.embedding is None):
        result = engine.recognize(
            decoded.waveform, options.granularity, want_embedding, settings.window_s, on_window=flow.window_started
        )
    else:  # classified in a batched call (jobs/batch.py)
        result = answer
    head_block = dimensions = None
    if head is not None and head.kind == "regression":  # a dimensional head: values and curves, no label
        from emotion2vec_webui.engine.dimensions import apply_dimensions, describe

        dimensions = apply_dimensions(head, result.embedding, settings.frame_smoothing_s)
        runlog(describe(dimensions))
    elif head is not None:
        from emotion2vec_webui.engine.heads import apply_head

        head_block = apply_head(head, result.embedding, settings.frame_smoothing_s, decoded.duration_s)
        label, confidence = head_block["label"], head_block["confidence"]
        runlog(f"head {head.name}: {label} ({confidence:.3f}) / 分类头 {head.name}：{label}（{confidence:.3f}）")
    if head is not None and not options.extract_embedding:
        result = replace(result, embedding=None)
    if getattr(engine, "head_only", False):
        runlog("head-only model: the nine-class scores are uniform placeholders / "
               "该模型没有九类情感分类头：九类得分仅为占位", logging.WARNING)  # fmt: skip
    granularity_zh = "逐帧" if options.granularity == "frame" else "整句"
    runlog(f"inference: {result.inference_s * 1000:.1f} ms, {result.num_frames} frames, {options.granularity} / "
           f"推理：{result.inference_s * 1000:.1f} 毫秒，{result.num_frames} 帧，{granularity_zh}")  # fmt: skip
    if flow.windows:
        runlog(f"long audio: analysed in {flow.windows} windows of at most {settings.window_s:g} s / "
               f"长音频：分 {flow.windows} 个窗口分析（每个至多 {settings.window_s:g} 秒）")  # fmt: skip

    frames = segs = None
    if options.granularity == "frame" and result.frame_logits is not None:
        probs = frame_scores(result.frame_logits, settings.frame_smoothing_s, HOP_S)
        frames = {
            "hop_s": HOP_S,
            "smoothing_s": settings.frame_smoothing_s,
            "labels": list(EMOTIONS),
            "scores": np.round(probs, 5).tolist(),
            # the unsmoothed per-frame softmax (the timeline's "raw" view; frames.csv)
            "raw_scores": round_significant(softmax(np.asarray(result.frame_logits, dtype=np.float64))),
        }
        segs = segments(probs, decoded.duration_s, HOP_S)
        smoothing = settings.frame_smoothing_s
        runlog(f"timeline: {len(probs)} frames, {len(segs)} segments (smoothing {smoothing:g} s) / "
               f"时间轴：{len(probs)} 帧，{len(segs)} 段（平滑 {smoothing:g} 秒）")  # fmt: skip
    if options.segmentation != "frames":  # speech segments, at either granularity (vad.py)
        from emotion2vec_webui.engine.vad import vad_segments

        segs = vad_segments(
            engine, decoded.waveform, options.segmentation, runlog, settings.window_s, settings.vad_max_segment_s
        )
    conversation = None
    if options.speakers != "none":  # speakers and turns (runs/conversation_run.py)
        from emotion2vec_webui.runs.conversation_run import converse

        conversation = converse(flow, decoded, engine)
    runlog(f"result: {result.emotion} ({result.confidence:.3f}) / "
           f"结果：{EMOTIONS_ZH[result.emotion]}（{result.confidence:.3f}）")  # fmt: skip

    embedding_meta = None
    if result.embedding is not None:
        embedding_meta = {"file": "embedding.npy", "shape": list(result.embedding.shape), "dtype": "float32"}
    if flow.count_wait or flow.decode_wall_s is None:
        processing_s = time.perf_counter() - flow.started
    else:  # this run's own work: its decode, its share of a batched model call, and what finish did
        own_inference = 0.0 if answer is None else result.inference_s
        processing_s = flow.decode_wall_s + own_inference + (time.perf_counter() - finish_started)
    payload = {
        "emotion": result.emotion,
        "emotion_zh": EMOTIONS_ZH[result.emotion],
        "confidence": round(result.confidence, 6),
        "scores": {k: round(v, 6) for k, v in result.scores.items()},
        "granularity": options.granularity,
        "timestamp": iso_timestamp(when),
        "request_id": request_id,
        "audio": {
            "source_name": decoded.source_name,
            "container": decoded.container,
            "duration_s": round(decoded.duration_s, 4),
            "original_sample_rate": decoded.original_sample_rate,
            "original_channels": decoded.original_channels,
            "sample_rate": decoded.sample_rate,
            "channels": decoded.channels,
            "channel_index": decoded.channel_index,
            "audio_stream": decoded.audio_stream,
            "source_url": flow.fetched.url if flow.fetched is not None else None,
        },
        "model": {
            "name": info.name,
            "hub": info.hub,
            "hub_id": info.hub_id,
            "device": info.device,
            "dtype": info.dtype,
            "random_weights": info.random_weights,
            "head_only": bool(getattr(engine, "head_only", False)),  # no nine-class head: see "head"
            "precision_note": info.precision_note or None,
        },
        "embedding": embedding_meta,
        "frames": frames,
        "segments": segs,
        "speakers": conversation.speakers if conversation is not None else None,
        "turns": conversation.turns if conversation is not None else None,
        "head": head_block,
        "dimensions": dimensions,
        "calibration": calibration.describe() if calibration is not None else None,  # what made the confidence
        "warnings": list(decoded.warnings) + ([HEAD_ONLY_WARNING] if getattr(engine, "head_only", False) else []),
        "processing_time_s": round(processing_s, 4),
        "app_version": __version__,
        **flow.extra_result,
    }
    mark_uncertain(payload, options.min_confidence)  # "uncertain" below --min-confidence
    payload["summary"] = summary_for_result(payload)  # per speaker, the arc, events (engine/call_summary.py)
    run = None
    t_write = time.perf_counter()
    if flow.write:
        flow.report(0.9, "写入运行目录 / writing the run folder")
        runlog(f"processing time {processing_s:.3f} s; writing run folder / 处理用时 {processing_s:.3f} 秒，写入运行目录")
        run = write_run(settings.output_dir, payload, decoded.waveform, result.embedding, runlog.text(), when)
        record_run_folder(run.path, payload)  # the catalog's row, right after the rename (never raises)
        runlog(f"wrote {run.run_id} / 已写入 {run.run_id}")
    return RunOutcome(
        run=run,
        result=payload,
        log_text=runlog.text(),
        engine_result=result,
        decode_s=decoded.decode_s + decoded.resample_s,
        inference_s=result.inference_s,
        write_s=time.perf_counter() - t_write if flow.write else 0.0,
    )
