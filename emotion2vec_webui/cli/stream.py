"""``emotion2vec-webui stream FILE|-``: play audio to a server's ``/api/v1/stream`` at the pace of the audio; print its events.

A client of the WebSocket protocol (docs/streaming.md), with the ``websockets``
package's threaded client: this thread sends the frames, on time
(``--speed`` times real time), while a reader thread prints each event as it
comes, as a line or (``--json``) as the server's own JSON. A WAV/FLAC/AIFF
file is sent as it is stored (16-bit PCM as ``pcm_s16le``, anything else as
``f32le``, its own rate and channels; rates outside 8–48 kHz are resampled
to 48 kHz); Opus in Ogg or WebM is sent as it is stored, page bytes as
``opus`` (the server decodes it), paced by its length; other formats are
decoded first (16 kHz mono); ``-`` reads raw PCM from stdin (``--rate``,
``--encoding``, ``--channels``; ``--encoding opus``: container bytes, sent as
they arrive: pace them at the source, e.g. ``ffmpeg -re``). The exit status
is the error's (docs/errors.md: 2 bad input, 3 unavailable or overloaded).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from emotion2vec_webui.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_MODEL_UNAVAILABLE,
    EXIT_OK,
    add_confidence_args,
    confidence_options,
    exit_code_for,
)
from emotion2vec_webui.errors import ERROR_CODES, E2VError
from emotion2vec_webui.options import check_calibration_name, check_min_confidence
from emotion2vec_webui.runs.confidence import shown
from emotion2vec_webui.runs.live.stream_options import BOUNDS, CHOICES, ENCODINGS

STREAM_PATH = "/api/v1/stream"
CHUNK_MS = 100  # audio per frame sent


def add_parser(sub) -> None:
    """Add the ``stream`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "stream",
        help="play a file (or raw PCM on stdin) to a server's /api/v1/stream in real time; print the live events",
        description="Play audio to a running server (emotion2vec-webui serve) over its WebSocket /api/v1/stream, "
        "at the pace of the audio (or --speed times faster), and print the events it sends back: intervals "
        "every --interval-ms, utterance starts and ends, warnings, and at the end the saved run (done).",
    )
    p.add_argument("input", metavar="FILE|-", help="an audio file, or - for raw PCM on stdin (--rate, --encoding)")
    p.add_argument("--url", default="http://127.0.0.1:7860", help="the server (default http://127.0.0.1:7860)")
    p.add_argument("--token", help="the API token (default: E2V_API_TOKEN)")
    p.add_argument("--speed", type=float, default=1.0, help="times real time (default 1; the server allows "
                   "E2V_STREAM_MAX_SPEED, E2V_STREAM_BUFFER_S seconds ahead)")  # fmt: skip
    p.add_argument("--chunk-ms", type=int, default=CHUNK_MS, help=f"audio per frame sent (default {CHUNK_MS})")
    p.add_argument("--rate", type=int, default=16000, help="stdin: the sample rate (default 16000)")
    p.add_argument(
        "--encoding",
        choices=CHOICES["encoding"],
        default="pcm_s16le",
        help="stdin: the sample format (opus: Ogg/WebM bytes, sent as they arrive)",
    )
    p.add_argument("--channels", type=int, default=1, help="stdin: interleaved channels (default 1)")
    p.add_argument("--interval-ms", type=int, default=1000, help="an interval message every this much audio")
    p.add_argument("--window-ms", type=int, default=3000, help="the trailing window each interval classifies")
    p.add_argument("--segmentation", choices=CHOICES["segmentation"], default="vad",
                   help="utterances from speech detection (vad) or fixed pieces of --segment-ms")  # fmt: skip
    p.add_argument("--segment-ms", type=int, default=3000, help="--segmentation fixed: the piece length")
    p.add_argument("--granularity", choices=CHOICES["granularity"], default="frame", help="the saved run's")
    p.add_argument("--speakers", choices=CHOICES["speakers"], default="none",
                   help="channels: each channel is a speaker (a stereo call)")  # fmt: skip
    p.add_argument("--head", help="a trained head's name (GET /api/v1/heads)")
    add_confidence_args(p)  # recognize's --calibration and --min-confidence: calibration, min_confidence in start
    p.add_argument("--embedding", action="store_true", help="the saved run keeps embedding.npy")
    p.add_argument(
        "--tags", action="store_true", help="utterances as LLM tag lines: [angry 0.71 · right · 12.4–15.0 s]"
    )
    p.add_argument("--json", action="store_true", help="print each event as the server's JSON, one per line")


def ws_url(url: str) -> str:
    """``http(s)://host:port`` (or ``ws(s)://…``) → the stream's ``ws(s)://host:port/api/v1/stream``."""
    url = url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
    if not url.startswith(("ws://", "wss://")):
        url = "ws://" + url
    return url if url.endswith(STREAM_PATH) else url + STREAM_PATH


def file_frames(path: Path, chunk_ms: int) -> tuple[dict, Iterator[bytes]]:
    """A file's ``start`` fields (rate, encoding, channels) and its frames of ``chunk_ms``."""
    import numpy as np
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # not a libsndfile format: decode it (16 kHz mono float32)
        from emotion2vec_webui.audio.decode import decode_audio
        from emotion2vec_webui.audio.format import SAMPLE_RATE

        data, rate, encoding = decode_audio(path).waveform[:, None], SAMPLE_RATE, "f32le"
    else:
        encoding = "pcm_s16le" if info.subtype in ("PCM_16", "PCM_U8", "PCM_S8") else "f32le"
        data, rate = sf.read(str(path), dtype="int16" if encoding == "pcm_s16le" else "float32", always_2d=True)
        low, high = BOUNDS["sample_rate"]
        if not low <= rate <= high:
            import soxr

            data = soxr.resample(data.astype(np.float32) / (32768.0 if encoding == "pcm_s16le" else 1.0), rate, 48000)
            data, rate, encoding = data.astype(np.float32), 48000, "f32le"
    dtype = ENCODINGS[encoding][0]
    step = max(1, rate * chunk_ms // 1000)
    frames = (np.ascontiguousarray(data[i : i + step], dtype=dtype).tobytes() for i in range(0, len(data), step))
    return {"sample_rate": int(rate), "encoding": encoding, "channels": int(data.shape[1])}, frames


def opus_frames(path: Path, chunk_ms: int) -> tuple[dict, Iterator[bytes], float] | None:
    """An Opus file in Ogg or WebM as it is stored: its ``start`` fields, its bytes in pieces of about ``chunk_ms``
    of audio, and its bytes per second of audio (the pace); None for anything else."""
    import av

    from emotion2vec_webui.audio.stream_decode import container_of

    with open(path, "rb") as f:
        if container_of(f.read(4)) is None:
            return None
    try:
        with av.open(str(path)) as container:
            audio = [s for s in container.streams if s.type == "audio"]
            if len(audio) != 1 or audio[0].codec_context.name != "opus":
                return None
            channels = audio[0].codec_context.channels or 1
            seconds = sum(frame.samples for frame in container.decode(audio[0])) / 48000
    except Exception:  # let the decoding path say what is wrong with it
        return None
    data = path.read_bytes()
    per_second = len(data) / max(seconds, 1e-3)
    step = max(1, int(per_second * chunk_ms / 1000))
    frames = (data[i : i + step] for i in range(0, len(data), step))
    return {"sample_rate": 48000, "encoding": "opus", "channels": int(channels)}, frames, per_second


def stdin_frames(rate: int, encoding: str, channels: int, chunk_ms: int) -> Iterator[bytes]:
    """Raw PCM from stdin in frames of ``chunk_ms`` (whole samples; the last may be shorter); opus: as it arrives."""
    if encoding == "opus":
        while chunk := sys.stdin.buffer.read1(16 * 1024):
            yield chunk
        return
    size = max(1, rate * chunk_ms // 1000) * channels * ENCODINGS[encoding][1]
    source = sys.stdin.buffer
    while chunk := source.read(size):
        yield chunk


def play(ws, frames: Iterator[bytes], bytes_per_second: float, speed: float = 1.0,
         sent: Callable[[float, float], None] | None = None) -> float:  # fmt: skip
    """Send ``frames`` at ``speed`` × the audio's pace; ``sent(audio_end_s, wall_time)`` after each. Audio seconds sent."""
    t0, audio = time.monotonic(), 0.0
    for frame in frames:
        wait = t0 + audio / speed - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        ws.send(frame)
        audio += len(frame) / bytes_per_second
        if sent is not None:
            sent(audio, time.monotonic())
    return audio


def start_message(args: argparse.Namespace) -> dict:
    """The ``start`` fields the flags give (the audio's own fields are added by the caller).

    Raises:
        E2VError: ``bad_request`` for a calibration name or threshold that the server would refuse (options.py).
    """
    start = {"type": "start", "interval_ms": args.interval_ms, "window_ms": args.window_ms,
             "segmentation": args.segmentation, "segment_ms": args.segment_ms, "granularity": args.granularity,
             "speakers": args.speakers, "tags": args.tags, "embedding": args.embedding}  # fmt: skip
    if args.head:
        start["head"] = args.head
    confidence = confidence_options(args)
    if confidence["calibration"] is not None:
        start["calibration"] = check_calibration_name(confidence["calibration"])
    if confidence["min_confidence"] is not None:
        start["min_confidence"] = check_min_confidence(confidence["min_confidence"], "--min-confidence")
    return start


def describe(event: dict) -> str:
    """One event as a line for people (an abstained answer: ``uncertain / 不确定 (…)``, as recognize prints it)."""
    kind = event.get("type")
    who = f" [{event['speaker']}]" if event.get("speaker") else ""
    if kind in ("interval", "utterance_end") and event.get("emotion"):
        head = event.get("head")
        head = shown(f"head {head['label']} {head['confidence']:.2f}", bool(head.get("uncertain"))) if head else ""
        head = f" · {head}" if head else ""
        what = f"{event['emotion']} {event['emotion_zh']} {event['confidence']:.2f}"
        what = shown(what, bool(event.get("uncertain"))) + head
        if kind == "interval":
            return f"interval    {event['start_s']:7.2f}–{event['end_s']:.2f} s  {what}"
        if event.get("tag"):
            return event["tag"]
        return f"utterance {event['index']:>3} {event['start_s']:7.2f}–{event['end_s']:.2f} s  {what}{who}"
    if kind == "utterance_end":
        return f"utterance {event['index']:>3} {event['start_s']:7.2f}–{event['end_s']:.2f} s  (not analysed){who}"
    if kind == "utterance_start":
        return f"utterance {event['index']:>3} {event['start_s']:7.2f} s … {who}".rstrip()
    if kind == "warning":
        return f"warning ({event['reason']}): {event['message']}"
    if kind == "error":
        return f"error: {event['message']} [{event['code']}]"
    if kind == "done":
        answer = shown(f"{event['emotion']} {event['confidence']:.2f}", bool(event.get("uncertain")))
        return (f"done: {event['duration_s']:.1f} s saved as {event['run_id']}; {answer}; {event['intervals']} "
                f"interval(s), {event['skipped_intervals']} skipped, {event['utterances']} utterance(s)")  # fmt: skip
    return json.dumps(event, ensure_ascii=False)


def run(args: argparse.Namespace) -> int:
    """``emotion2vec-webui stream FILE|-``: exit 0 when the take was saved (``done``), else the error's status."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    from emotion2vec_webui.config import load_settings

    if args.speed <= 0 or args.chunk_ms <= 0:
        raise E2VError("bad_request", "--speed and --chunk-ms must be positive. / --speed 与 --chunk-ms 必须为正数。")
    start = start_message(args)
    if args.input == "-":
        start.update(sample_rate=args.rate, encoding=args.encoding, channels=args.channels, source_name="stdin.wav")
        frames = stdin_frames(args.rate, args.encoding, args.channels, args.chunk_ms)
    else:
        path = Path(args.input)
        if not path.is_file():
            raise E2VError("not_found", f"{args.input}: no such file. / 找不到文件 {args.input}。")
        opus = opus_frames(path, args.chunk_ms)
        fields, frames = opus[:2] if opus else file_frames(path, args.chunk_ms)
        start.update(fields, source_name=path.name)
    token = args.token or load_settings().api_token
    headers = {"Authorization": f"Bearer {token}"} if token else None
    bytes_per_second = start["sample_rate"] * start["channels"] * ENCODINGS[start["encoding"]][1]
    if start["encoding"] == "opus":  # a file: its bytes per second of audio; stdin: as it comes
        bytes_per_second = opus[2] if args.input != "-" else float("inf")
    outcome: dict = {}

    def read(ws) -> None:
        try:
            for raw in ws:
                event = json.loads(raw)
                print(json.dumps(event, ensure_ascii=False) if args.json else describe(event), flush=True)
                if event.get("type") in ("done", "error"):
                    outcome.update(event)
        except ConnectionClosed:  # closed without a close frame: what came before is all there is
            pass

    try:
        with connect(ws_url(args.url), additional_headers=headers, max_size=2**22, open_timeout=10) as ws:
            ws.send(json.dumps(start))
            reader = threading.Thread(target=read, args=(ws,), daemon=True)
            reader.start()
            try:
                play(ws, frames, bytes_per_second, args.speed)
                ws.send(json.dumps({"type": "stop"}))
            except ConnectionClosed:
                pass  # the server ended the take (an error, a limit): the reader has its message
            reader.join()
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        print(f"error: cannot stream to {ws_url(args.url)}: {exc} / 无法连接服务器", file=sys.stderr)
        return EXIT_MODEL_UNAVAILABLE
    if outcome.get("type") == "done":
        return EXIT_OK
    code = outcome.get("code")
    return exit_code_for(E2VError(code, "")) if code in ERROR_CODES else EXIT_BAD_INPUT
