"""A live take analysed as it arrives: interval and utterance events while it runs, a run folder at the end.

One concept: one take's audio, its two analyses and its run, which share the
take's clock and spools. Face-neutral (asyncio, no HTTP): ``serving/stream.py``
feeds it the frames of ``/api/v1/stream`` and sends what it emits; the message
shapes are ``serving/stream_schemas/`` (docs/streaming.md).

* :meth:`LiveStream.feed` takes one frame of PCM (:mod:`runs.stream_audio`):
  checked, mixed, resampled to 16 kHz and spooled to disk, at once.
* The analysis (:meth:`LiveStream.start`, one asyncio task) runs beside it:

  - **intervals**: every ``interval_ms`` of audio, the trailing ``window_ms``
    is classified through the service's inference queue. One interval is in
    flight at a time; when it comes back the *latest* due interval goes next,
    so a slow server skips intervals, never audio, and says so (``warning``,
    reason ``behind``);
  - **utterances**: speech detection on each speaker's signal as it arrives
    (:class:`engine.vad_stream.SpeechTracker`; or back-to-back pieces with
    ``segmentation=fixed``) tells ``utterance_start`` at once; each ended
    utterance is classified whole (as the model is meant to be used) and told
    as ``utterance_end``, in order, none skipped. At most
    :data:`MAX_PENDING_UTTERANCES` wait: beyond, :meth:`LiveStream.room`
    holds the face's reading (back-pressure on the client).
* :meth:`LiveStream.finish` ends the take: the last utterances are told, then
  the whole take is classified and written as a normal run folder through
  the one recognise flow (``runs/recognize.py``), with a ``stream`` block in
  result.json (the intervals and utterances sent); :meth:`LiveStream.done`
  is the final message.

A ``calibration`` and a ``min_confidence`` in ``start`` work as in the recognise
flow (:mod:`runs.confidence`, loaded and checked when the take is made, before
any audio): intervals and utterances carry calibrated scores (a head's
calibration folded into the head) and, with a threshold, ``uncertain``; the
run's result.json names the calibration.

Inference goes through the service's scheduler (``runs/inference/scheduler.py``) as
typed requests (:meth:`LiveStream._classify`): intervals at ``live`` priority,
ahead of other work and dropped unanswered when they wait too long (a newer
one comes), utterances at ``interactive`` priority, each stream its own share;
the whole take at the end through ``service.submit`` like an upload.

A model that stops answering (a hung or dead inference worker) must not hang
the socket: every model call of the take waits at most
:data:`INFER_TIMEOUT_S` (queue included; the final whole-take call that much
per model window of the take). Past it the take fails (:attr:`LiveStream.failure`,
``model_unavailable``, which the face sends as its ``error``); the audio
received so far is kept by :meth:`LiveStream.keep_audio` as a WAV in the
outputs folder's ``incomplete_takes/``, to recognise again later.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES, SAMPLE_RATE
from emotion2vec_webui.engine.calibration import calibrate_result
from emotion2vec_webui.engine.conversation import channel_speaker_ids
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.runs.catalog.folders import INCOMPLETE_DIR
from emotion2vec_webui.runs.confidence import is_uncertain, load_calibration, nine_class
from emotion2vec_webui.runs.live.stream_audio import FixedSegmenter, Signal16k, mix, pcm_block
from emotion2vec_webui.runs.live.stream_options import ENCODINGS, StreamOptions, tag_line

log = logging.getLogger(__name__)

MIN_WINDOW_S = 0.5  # no interval before this much audio
MAX_PENDING_UTTERANCES = 8  # ended utterances waiting for the model, beyond which reading pauses
MAX_UNSEGMENTED_S = 5.0  # audio not yet through speech detection, beyond which reading pauses
WARN_EVERY_S = 1.0  # skipped intervals are told at most this often
RETRY_S = 0.2  # a full inference queue is tried again after this long …
UTTERANCE_PATIENCE_S = 30.0  # … for this long for an utterance (then it is told without scores)
FINAL_PATIENCE_S = 120.0  # … and for this long for the whole take
INFER_TIMEOUT_S = 60.0  # the longest wait for one model call (queued + running); then the model is taken as hung
DIGITS = 4  # score rounding in messages

Emit = Callable[[dict], Awaitable[None]]


def _scores(result, head, smoothing_s: float, duration_s: float, min_confidence: float | None = None) -> dict:
    """An :class:`EmotionResult`'s nine scores (and the head's answer) as the messages carry them.

    With ``min_confidence`` the answer and the head's carry ``uncertain`` (:func:`runs.confidence.is_uncertain`,
    as result.json's segments do); the result and the head come calibrated when the take has a calibration.
    """
    out = {
        "emotion": result.emotion,
        "emotion_zh": EMOTIONS_ZH[result.emotion],
        "confidence": round(float(result.confidence), DIGITS),
        "scores": {k: round(float(result.scores[k]), DIGITS) for k in EMOTIONS},
        "head": None,
    }
    if min_confidence is not None:
        out["uncertain"] = is_uncertain(float(result.confidence), min_confidence)
    if head is not None:
        from emotion2vec_webui.engine.heads import apply_head

        block = apply_head(head, result.embedding, smoothing_s, duration_s)
        out["head"] = {
            "name": block["name"],
            "label": block["label"],
            "label_zh": block["label_zh"],
            "confidence": round(float(block["confidence"]), DIGITS),
            "scores": {k: round(float(v), DIGITS) for k, v in block["scores"].items()},
        }
        if min_confidence is not None:
            out["head"]["uncertain"] = is_uncertain(float(block["confidence"]), min_confidence)
    return out


async def _accepted(submit, patience_s: float):
    """``submit()``'s future, tried again while the queue is full, for ``patience_s`` (0: once)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return submit()
        except E2VError as exc:
            if exc.code != "overloaded" or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(RETRY_S)


class LiveStream:
    """One take (see the module docstring). Build it in a worker thread: it loads the head and the VAD graph.

    Args:
        service: the server's :class:`service.Service`.
        options: the checked ``start`` message.
        request_id: ties the run's run.log to the server log.
        container: result.json's ``audio.container``: ``stream``, or ``microphone`` for the Live tab's takes.

    Raises:
        E2VError: ``model_unavailable``; the head's or the calibration's ``not_found`` / ``head_mismatch`` /
            ``head_invalid`` (``bad_request``: a head's calibration without that head, as REST says it);
            ``storage_*`` when the spool cannot be made.
    """

    def __init__(self, service, options: StreamOptions, request_id: str | None = None,
                 container: str = "stream") -> None:  # fmt: skip
        from emotion2vec_webui.engine.vad_stream import SpeechTracker

        self.service, self.options, self.request_id, self.container = service, options, request_id, container
        self.client = f"stream:{request_id or id(self)}"  # the scheduler's share: each stream its own
        settings = self.settings = service.settings
        engine = service.engine  # model_unavailable before anything else
        self.head = None
        if options.head:
            from emotion2vec_webui.runs.stores.head_store import load_for_engine

            self.head = load_for_engine(settings.heads_dir, options.head, engine)
            if self.head.kind == "regression":  # messages carry a label and scores (docs/streaming.md)
                raise E2VError("bad_request", f"Head {options.head!r} is a regression (dimensional) head: live "
                               "streams take classification heads; use recognize for its values and curves. / "
                               "实时流只支持分类头;回归(维度)头请用 recognize。")  # fmt: skip
        # the calibration as the recognise flow loads it (not_found, head_mismatch, bad_request before any audio):
        # a head's is folded into the head, a nine-class one rescales each answer (_classify)
        calibration, self.head = load_calibration(options, settings, engine, self.head)
        self.nine_class = nine_class(calibration)
        self.dtype = ENCODINGS[options.encoding][0]
        self.rate = options.decoded_rate  # Hz of the samples fed (48 kHz when an opus decoder gives them)
        self.max_frames = int(settings.max_duration_s * self.rate)  # source frames kept at most
        self.decoder = None  # opus: the child decoder (audio/stream_decode.py), made at the first frame
        self.received_frames = 0
        self.truncated = False
        self.mix = Signal16k(self.rate, settings.output_dir)
        per_channel = options.speakers == "channels"
        self.speakers: list[str | None] = channel_speaker_ids(options.channels) if per_channel else [None]
        self.channel_signals = (
            [Signal16k(self.rate, settings.output_dir) for _ in range(options.channels)] if per_channel else []
        )

        def segmenter():
            if options.segmentation == "fixed":
                return FixedSegmenter(int(options.segment_ms * SAMPLE_RATE / 1000))
            return SpeechTracker(max_segment_s=settings.vad_max_segment_s)

        self.segmenters = [segmenter() for _ in self.speakers]
        self.unsegmented: list[list[np.ndarray]] = [[] for _ in self.speakers]
        self.unsegmented_samples = 0
        self.interval = int(options.interval_ms * SAMPLE_RATE / 1000)  # samples
        self.window = int(options.window_ms * SAMPLE_RATE / 1000)
        self.last_k = -(-int(MIN_WINDOW_S * SAMPLE_RATE) // self.interval) - 1  # intervals before the first due
        self.intervals: list[dict] = []  # what was sent, for result.json
        self.utterances: list[dict] = []
        self.pending: collections.deque[tuple[int, int, int, int]] = collections.deque()  # (index, speaker, start, end)
        self.open_index: dict[int, int] = {}  # speaker → index of its open utterance
        self.n_utterances = 0
        self.skipped = self.skipped_untold = 0
        self.max_lag_s = 0.0
        self.last_warning = 0.0
        self.told_clipped = False
        self.warnings: list[str] = []  # kept in result.json
        self.input_closed = False
        self._emit: Emit | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._interval_job: asyncio.Task | None = None
        self._utterance_job: asyncio.Task | None = None
        self._room = asyncio.Event()
        self._room.set()
        self.infer_timeout_s = INFER_TIMEOUT_S
        self.failure: E2VError | None = None  # the model stopped answering: the take cannot go on
        self._failed = asyncio.Event()

    # -- the audio ---------------------------------------------------------------------------------
    @property
    def received_s(self) -> float:
        """Seconds of source audio received."""
        return self.received_frames / self.rate

    @property
    def full(self) -> bool:
        """The take reached E2V_MAX_DURATION_S: nothing more is kept."""
        return self.received_frames >= self.max_frames

    def feed(self, data: bytes) -> None:
        """Take one binary frame: checked, mixed, resampled and spooled now; the analysis is woken.

        Audio past E2V_MAX_DURATION_S is dropped (``truncated``; the face ends the take).

        Raises:
            E2VError: ``bad_request`` (not whole samples), ``audio_nonfinite``, ``storage_*``; opus:
                ``bad_request`` (not Ogg or WebM, other channels than ``start`` said), ``audio_undecodable``.
        """
        if self.options.compressed:
            self._feed_block(self._decode(data))
        else:
            self._feed_block(pcm_block(data, self.dtype, self.options.channels))

    def _decode(self, data: bytes) -> np.ndarray:
        """opus: hand the pages to the stream's decoder; the samples it has decoded so far."""
        from emotion2vec_webui.audio.stream_decode import StreamDecoder, container_of

        if self.decoder is None:
            kind = container_of(data)
            if kind is None:
                raise E2VError("bad_request", "With encoding opus the first frame must begin an Ogg or a WebM "
                                              "stream. / opus 编码的第一帧必须是 Ogg 或 WebM 流的开头。")  # fmt: skip
            self.decoder = StreamDecoder(kind, self.settings.max_duration_s)
        self.decoder.check()
        self.decoder.write(data)
        return self._decoded(self.decoder.take())

    def _decoded(self, block: np.ndarray) -> np.ndarray:
        if block.size and block.shape[1] != self.options.channels:
            raise E2VError("bad_request", f"The Opus stream has {block.shape[1]} channel(s), the start message said "
                                          f"{self.options.channels}. / Opus 流的声道数与 start 消息不符。")  # fmt: skip
        if block.size and not np.isfinite(block).all():
            raise E2VError("audio_nonfinite", "The stream decoded to NaN or infinite samples. / 音频流解码出 NaN 或"
                                              "无穷大的采样值。")  # fmt: skip
        return block

    def _feed_block(self, block: np.ndarray) -> None:
        room = self.max_frames - self.received_frames
        if len(block) > room:
            block, self.truncated = block[:room], True
        if not len(block):
            return
        self.received_frames += len(block)
        mono = self.mix.add(mix(block))
        if self.channel_signals:
            for i, signal in enumerate(self.channel_signals):
                self._unsegment(i, signal.add(np.array(block[:, i], dtype=np.float32)))
        else:
            self._unsegment(0, mono)
        self._wake.set()

    def _unsegment(self, speaker: int, samples: np.ndarray) -> None:
        if samples.size:
            self.unsegmented[speaker].append(samples)
            if speaker == 0:
                self.unsegmented_samples += samples.size
                if self.unsegmented_samples > MAX_UNSEGMENTED_S * SAMPLE_RATE:
                    self._room.clear()

    async def room(self) -> None:
        """Wait until the analysis can take more audio (the face reads the next frame after this)."""
        await self._room.wait()

    def _update_room(self) -> None:
        behind = len(self.pending) >= MAX_PENDING_UTTERANCES
        behind |= self.unsegmented_samples > MAX_UNSEGMENTED_S * SAMPLE_RATE
        self._room.clear() if behind else self._room.set()

    # -- the analysis ------------------------------------------------------------------------------
    def start(self, emit: Emit) -> None:
        """Start the analysis task; ``emit(message)`` sends one server message (it must not raise)."""
        self._emit = emit
        self._task = asyncio.ensure_future(self._analyse())

    async def warn(self, reason: str, english: str, chinese: str, keep: bool = False, **extra) -> None:
        """Send a ``warning`` message (``keep``: also into result.json's warnings)."""
        message = f"{english} / {chinese}"
        if keep:
            self.warnings.append(message)
        await self._send({"type": "warning", "reason": reason, "message": message, **extra})

    async def _send(self, message: dict) -> None:
        if self._emit is not None:
            await self._emit(message)

    async def failed(self) -> E2VError:
        """Wait until the take fails (the model stopped answering); the failure."""
        await self._failed.wait()
        return self.failure

    def _fail(self, seconds: float) -> E2VError:
        if self.failure is None:
            self.failure = E2VError(
                "model_unavailable",
                f"The model did not answer within {seconds:g} s: the inference worker is hung or gone, so the take "
                f"ends here; retry later. / 模型在 {seconds:g} 秒内没有响应（推理进程卡住或已退出），录音到此结束，请稍后重试。",
            )
            log.error("stream %s: no answer from the model within %.0f s", self.request_id, seconds)
            self._failed.set()
            self._room.set()  # nothing waits on the analysis any more
            self._wake.set()
        return self.failure

    async def _analyse(self) -> None:
        while self.failure is None:
            await self._wake.wait()
            self._wake.clear()
            if self.failure is not None:
                return
            self._start_interval()  # first: an interval does not wait for this round's speech detection
            await self._segment()
            self._start_interval()
            self._start_utterance()
            await self._tell_skipped()
            if self.mix.clipped and not self.told_clipped:
                self.told_clipped = True
                await self.warn("clipped", "samples over full scale are clipped (send float samples within -1…1)",
                                "超出满量程的采样被截幅（浮点采样应在 -1…1 之内）")  # fmt: skip
            busy = self._interval_job is not None or self._utterance_job is not None or self.pending
            if self.input_closed and not busy and not self.unsegmented_samples and not any(self.unsegmented):
                return

    async def _segment(self) -> None:
        """Speech detection (or fixed pieces) over the audio that arrived since the last round."""
        chunks = [np.concatenate(c) if c else np.zeros(0, np.float32) for c in self.unsegmented]
        self.unsegmented = [[] for _ in self.speakers]
        self.unsegmented_samples = 0
        closing = self.input_closed
        if not any(c.size for c in chunks) and not closing:
            self._update_room()
            return

        def run() -> list[list]:
            out = []
            for seg, chunk in zip(self.segmenters, chunks, strict=True):
                events = seg.push(chunk) if chunk.size else []
                out.append(events + (seg.flush() if closing else []))
            return out

        for speaker, events in enumerate(await asyncio.to_thread(run)):
            for event in events:
                await self._utterance_event(speaker, event)
        self._update_room()

    async def _utterance_event(self, speaker: int, event) -> None:
        if event.kind == "start":
            index = self.open_index[speaker] = self.n_utterances
            self.n_utterances += 1
            await self._send({"type": "utterance_start", "index": index, "start_s": round(event.start / SAMPLE_RATE, 3),
                              "speaker": self.speakers[speaker]})  # fmt: skip
        else:
            self.pending.append((self.open_index.pop(speaker), speaker, event.start, event.end))

    def _start_interval(self) -> None:
        if self._interval_job is not None:
            return
        k = self.mix.spool.samples // self.interval
        if k <= self.last_k:
            return
        self.skipped += k - self.last_k - 1
        self.skipped_untold += k - self.last_k - 1
        self.last_k = k
        self._interval_job = asyncio.ensure_future(self._run_interval(k))

    async def _run_interval(self, k: int) -> None:
        end = k * self.interval
        start = max(0, end - self.window)
        lag = (self.mix.spool.samples - end) / SAMPLE_RATE
        self.max_lag_s = max(self.max_lag_s, lag)
        try:
            got = await self._classify(self.mix.spool.read(start, end), "live")
            if got is None:  # not started in time: dropped, the next interval is newer
                self.skipped += 1
                self.skipped_untold += 1
                return
        except E2VError as exc:
            self.skipped += 1
            if exc is self.failure:
                return
            await self.warn(exc.code if exc.code == "overloaded" else "analysis_failed",
                            f"interval {k} was not analysed: {exc.message}", f"第 {k} 个区间未分析",
                            skipped=1, at_s=round(end / SAMPLE_RATE, 3))  # fmt: skip
        except Exception:  # never ends the take; the log keeps the trace
            log.exception("stream interval failed")
            self.skipped += 1
        else:
            message = {"type": "interval", "index": k, "start_s": round(start / SAMPLE_RATE, 3),
                       "end_s": round(end / SAMPLE_RATE, 3), **got}  # fmt: skip
            self.intervals.append({key: v for key, v in message.items() if key != "type"})
            await self._send(message)
        finally:
            self._interval_job = None
            self._wake.set()

    async def _tell_skipped(self) -> None:
        now = time.monotonic()
        if self.skipped_untold and (now - self.last_warning >= WARN_EVERY_S or self.input_closed):
            n, self.skipped_untold, self.last_warning = self.skipped_untold, 0, now
            lag = max(0.0, (self.mix.spool.samples - self.last_k * self.interval) / SAMPLE_RATE)
            await self.warn("behind", f"the analysis is {lag:.1f} s behind: {n} interval(s) skipped (all audio is kept)",
                            f"分析落后 {lag:.1f} 秒：跳过 {n} 个区间（音频完整保存）", skipped=n, lag_s=round(lag, 3))  # fmt: skip

    def _start_utterance(self) -> None:
        if self._utterance_job is None and self.pending:
            self._utterance_job = asyncio.ensure_future(self._run_utterance(*self.pending.popleft()))
            self._update_room()

    async def _run_utterance(self, index: int, speaker: int, start: int, end: int) -> None:
        signal = self.channel_signals[speaker] if self.channel_signals else self.mix
        message = {"type": "utterance_end", "index": index, "start_s": round(start / SAMPLE_RATE, 3),
                   "end_s": round(end / SAMPLE_RATE, 3), "speaker": self.speakers[speaker]}  # fmt: skip
        got = {"emotion": None, "emotion_zh": None, "confidence": None, "scores": None, "head": None}
        try:
            wave = signal.spool.read(start, end)
            if len(wave) >= MIN_MODEL_SAMPLES:
                got = await self._classify(wave, "interactive", UTTERANCE_PATIENCE_S)
        except E2VError as exc:
            if exc is self.failure:
                return
            await self.warn(exc.code if exc.code == "overloaded" else "analysis_failed",
                            f"utterance {index} was not analysed: {exc.message}", f"第 {index} 句未分析")  # fmt: skip
        except Exception:
            log.exception("stream utterance failed")
        message.update(got)
        if self.options.tags and got["emotion"] is not None:
            message["tag"] = tag_line(got["emotion"], got["confidence"], start / SAMPLE_RATE, end / SAMPLE_RATE,
                                      self.speakers[speaker], bool(got.get("uncertain")))  # fmt: skip
        self.utterances.append({key: v for key, v in message.items() if key != "type"})
        await self._send(message)
        self._utterance_job = None
        self._update_room()
        self._wake.set()

    async def _classify(self, wave: np.ndarray, priority: str, patience_s: float = 0.0) -> dict | None:
        """One piece of audio through the scheduler; None when a live request was dropped as stale."""
        from emotion2vec_webui.runs.inference.scheduler import LIVE_MAX_AGE_S, InferenceRequest, StaleWindow

        max_age = max(LIVE_MAX_AGE_S, self.interval / SAMPLE_RATE) if priority == "live" else None
        request = InferenceRequest(wave, "utterance", self.head is not None, window_s=self.settings.window_s,
                                   priority=priority, client=self.client, max_age_s=max_age)  # fmt: skip
        try:
            result = await self._answer(functools.partial(self.service.infer, request), patience_s,
                                        self.infer_timeout_s)  # fmt: skip
        except StaleWindow:
            return None
        if self.nine_class is not None:
            result = calibrate_result(result, self.nine_class)
        return _scores(result, self.head, self.settings.frame_smoothing_s, len(wave) / SAMPLE_RATE,
                       self.options.min_confidence)  # fmt: skip

    async def _answer(self, submit, patience_s: float, timeout_s: float):
        """The answer of ``submit()`` once :func:`_accepted` (within ``patience_s``), within ``timeout_s`` from then
        (then the take fails: :meth:`_fail`): a hung model is told after ``timeout_s``, however long the queue
        took to accept the request. A failed take asks no more."""
        if self.failure is not None:
            raise self.failure
        future = await _accepted(submit, patience_s)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except asyncio.TimeoutError:
            raise self._fail(timeout_s) from None

    # -- the end -------------------------------------------------------------------------------------
    async def finish(self):
        """End the take: tell what is left, then classify the whole take and write its run folder.

        Returns:
            The :class:`recognize.RunOutcome`.

        Raises:
            E2VError: ``audio_empty`` / ``audio_too_short``; model and storage errors.
        """
        if not self.input_closed:
            if self.decoder is not None:  # opus: what the decoder still holds
                self._feed_block(self._decoded(await asyncio.to_thread(self.decoder.close)))
            self.input_closed = True
            tail = self.mix.close()  # the resampler's last samples
            for i, signal in enumerate(self.channel_signals):
                self._unsegment(i, signal.close())
            if not self.channel_signals:
                self._unsegment(0, tail)
            self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # the events stop there; the take itself is still saved
                log.exception("stream analysis failed")
        if self.failure is not None:
            raise self.failure
        return await self._save()

    async def _save(self):
        from emotion2vec_webui.audio.format import DecodedAudio
        from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

        total = self.mix.spool.samples
        if total == 0:
            raise E2VError("audio_empty", "The stream sent no audio. / 音频流没有发送任何音频。")
        if total < max(MIN_MODEL_SAMPLES, int(self.settings.min_duration_s * SAMPLE_RATE)):
            raise E2VError("audio_too_short", f"The take is only {total / SAMPLE_RATE:.2f} s long. / "
                                              f"录音只有 {total / SAMPLE_RATE:.2f} 秒。")  # fmt: skip
        opts = self.options
        warnings = list(self.warnings)
        if self.mix.clipped:
            warnings.append(
                f"{self.mix.clipped} samples over full scale were clipped / {self.mix.clipped} 个超出满量程的采样被截幅"
            )
        wave = await asyncio.to_thread(self.mix.spool.read, 0, total)
        decoded = DecodedAudio(waveform=wave, sample_rate=SAMPLE_RATE, original_sample_rate=self.rate,
                               original_channels=opts.channels, source_name=opts.source_name, container=self.container,
                               warnings=tuple(warnings))  # fmt: skip
        options = RecognizeOptions(granularity=opts.granularity, extract_embedding=opts.embedding,
                                   segmentation="vad" if opts.segmentation == "vad" else "frames", head=opts.head,
                                   speakers=opts.speakers, calibration=opts.calibration,
                                   min_confidence=opts.min_confidence)  # fmt: skip
        flow = Recognition(self.settings, options, request_id=self.request_id)
        if self.channel_signals:
            flow.channel_waveforms = [s.spool.read(0, s.spool.samples) for s in self.channel_signals]
        flow.extra_result = {"stream": self.summary()}
        submit = functools.partial(self.service.submit, functools.partial(flow.finish, decoded), client=self.client)
        windows = 1 + int(total / SAMPLE_RATE // max(1.0, self.settings.window_s))  # the whole take is this many calls
        return await self._answer(submit, FINAL_PATIENCE_S, self.infer_timeout_s * windows)

    def keep_audio(self) -> str | None:
        """Write the audio received so far (16 kHz, 16-bit) to ``<outputs>/incomplete_takes/<id>.wav``.

        For a take the model could not save as a run: it is not lost, and can be recognised again.

        Returns:
            Its path relative to the outputs folder, or None when there is no audio or it could not be written.
        """
        import soundfile as sf

        from emotion2vec_webui.files import atomic_open

        total = self.mix.spool.samples
        if total == 0:
            return None
        name = f"{INCOMPLETE_DIR}/stream_{time.strftime('%Y%m%d_%H%M%S')}_{self.request_id or id(self)}.wav"
        target = Path(self.settings.output_dir) / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as f:
                sf.write(f, self.mix.spool.read(0, total), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        except (OSError, RuntimeError) as exc:
            log.error("stream %s: the take's audio could not be kept: %s", self.request_id, exc)
            return None
        log.warning("stream %s: %.1f s of audio kept as %s", self.request_id, total / SAMPLE_RATE, target)
        return name

    def summary(self) -> dict:
        """result.json's ``stream`` block: how the take came in and what was sent while it ran."""
        o = self.options
        return {
            "encoding": o.encoding, "sample_rate": self.rate, "channels": o.channels, "speakers": o.speakers,
            "interval_s": o.interval_ms / 1000, "window_s": o.window_ms / 1000, "segmentation": o.segmentation,
            "received_s": round(self.received_s, 4), "truncated": self.truncated,
            "skipped_intervals": self.skipped, "max_lag_s": round(self.max_lag_s, 3),
            "intervals": self.intervals, "utterances": self.utterances,
        }  # fmt: skip

    def done(self, outcome) -> dict:
        """The final ``done`` message for a saved take."""
        result = outcome.result
        return {
            "type": "done", "run_id": outcome.run.run_id if outcome.run else None,
            "duration_s": result["audio"]["duration_s"], "emotion": result["emotion"],
            "emotion_zh": result["emotion_zh"], "confidence": result["confidence"],
            "uncertain": bool(result.get("uncertain")), "intervals": len(self.intervals), "skipped_intervals": self.skipped,
            "utterances": len(self.utterances), "warnings": list(result.get("warnings") or []),
        }  # fmt: skip

    def close(self) -> None:
        """Stop the analysis (when still running) and drop the spools; the take is not saved."""
        if self.decoder is not None:
            self.decoder.kill()
        for task in (self._task, self._interval_job, self._utterance_job):
            if task is not None and not task.done():
                task.cancel()
        for signal in (self.mix, *self.channel_signals):
            signal.spool.close()
