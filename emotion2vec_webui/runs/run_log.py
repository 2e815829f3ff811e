"""run.log: a run's processing log, one timestamped line per step, each line in both languages.

Every line reads ``English / 中文``. The English comes first, so scripts and
tests that grep a figure (``inference: 12.3 ms``, ``processing time 0.41 s``)
keep working; the Chinese half repeats the figures. :class:`RunLog` collects
the lines (the one recognise flow, ``runs/recognize.py``, writes them into the
run folder); :func:`log_input` writes the lines about the input, which every
run has.
"""

from __future__ import annotations

import logging
from datetime import datetime

from emotion2vec_webui.audio.decode import DecodedAudio

# The flow's logger by name: a Ray batch quietens it (jobs/ray_batch.py), since each run.log has the details.
log = logging.getLogger("emotion2vec_webui.runs.recognize")


class RunLog:
    """The processing log of one run: timestamped lines, also sent to the module logger."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.lines: list[str] = []

    def __call__(self, message: str, level: int = logging.INFO, at: datetime | None = None) -> None:
        # ``at``: when it happened, for a line written later (decode ran before finish).
        stamp = (at or datetime.now()).strftime("%H:%M:%S.%f")[:-3]
        self.lines.append(f"{stamp} {message}")
        # The id goes as a record attribute: the worker thread does not see the request's contextvar.
        log.log(level, "%s", message, extra={"request_id": self.request_id})

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def log_input(
    runlog: RunLog,
    decoded: DecodedAudio,
    version: str,
    *,
    started_at: datetime | None = None,
    decoded_at: datetime | None = None,
    decode_wall_s: float | None = None,
    fetched=None,
) -> None:
    """The lines about the input: the request, decoding, resampling, the audio, a URL fetch, the channel, warnings.

    Args:
        runlog: the run's log.
        decoded: the decoded input.
        version: the app's version.
        started_at: when the flow started (its decode); None when it was decoded elsewhere (now is used).
        decoded_at: when decoding ended.
        decode_wall_s: the decode call's wall time, a worker's round trip included (None: not decoded here).
        fetched: the :class:`url_fetch.Fetched` download when the input was a URL.
    """
    d = decoded
    runlog(f"request {runlog.request_id} · emotion2vec-webui {version} / 请求 {runlog.request_id}", at=started_at)
    decode_ms = d.decode_s * 1000
    trip, trip_zh = "", ""
    if decode_wall_s is not None:
        trip = f" ({decode_wall_s * 1000:.1f} ms with the worker round trip)"
        trip_zh = f"（含工作进程往返 {decode_wall_s * 1000:.1f} 毫秒）"
    runlog(
        f"decoded {d.source_name} ({d.container}, {d.original_sample_rate} Hz, {d.original_channels} ch) "
        f"in {decode_ms:.1f} ms{trip} / 已解码（{d.original_sample_rate} Hz，{d.original_channels} 声道），"
        f"用时 {decode_ms:.1f} 毫秒{trip_zh}",
        at=decoded_at,
    )
    if d.original_sample_rate != d.sample_rate or d.original_channels != 1:
        rates, ms = f"{d.original_sample_rate} → {d.sample_rate} Hz", d.resample_s * 1000
        runlog(
            f"mixed to mono and resampled {rates} (soxr HQ) in {ms:.1f} ms / 已混为单声道并重采样 {rates}，用时 {ms:.1f} 毫秒",
            at=decoded_at,
        )
    runlog(
        f"audio: {d.duration_s:.3f} s at {d.sample_rate} Hz mono / 音频：{d.duration_s:.3f} 秒，{d.sample_rate} Hz 单声道",
        at=decoded_at,
    )
    if fetched is not None:
        f = fetched
        runlog(
            f"fetched {f.url} from {f.address} ({len(f.data)} bytes, {f.redirects} redirect(s), {f.seconds:.2f} s) / "
            f"已下载（{len(f.data)} 字节，{f.redirects} 次重定向，{f.seconds:.2f} 秒）",
            at=started_at,
        )
    if d.channel_index is not None or d.audio_stream:
        runlog(
            f"took audio stream {d.audio_stream}, channel {d.channels} (index {d.channel_index}) / "
            f"取音频流 {d.audio_stream} 的声道 {d.channels}（序号 {d.channel_index}）"
        )
    for warning in d.warnings:  # the decoder's warnings are bilingual themselves
        runlog(f"warning / 警告: {warning}", logging.WARNING)
