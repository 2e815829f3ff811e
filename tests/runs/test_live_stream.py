"""The live-stream core without a server (runs/live/live_stream.py, stream_audio.py, stream_options.py).

A stand-in service runs the real tiny engine on one worker thread, slowed
down where a test needs a slow machine. Every message the core emits is
checked against its shipped JSON Schema (serving/stream_schemas/).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.errors import ERROR_CODES, E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.options import HEAD_NAME_RE, MIN_CONFIDENCE
from emotion2vec_webui.runs.live.live_stream import LiveStream
from emotion2vec_webui.runs.live.stream_audio import Signal16k, mix, pcm_block
from emotion2vec_webui.runs.live.stream_options import BOUNDS, CHOICES, StreamOptions, tag_line
from emotion2vec_webui.runs.schema import validate_result
from tests.async_util import run_async


def schemas() -> dict[str, dict]:
    folder = resources.files("emotion2vec_webui.serving").joinpath("stream_schemas")
    return {
        p.name.split(".")[0]: json.loads(p.read_text("utf-8")) for p in folder.iterdir() if p.name.endswith(".json")
    }


SCHEMAS = schemas()


def check_message(message: dict) -> None:
    jsonschema.validate(message, SCHEMAS[message["type"]])


class SlowService:
    """The service's ``infer`` (typed requests) and ``submit`` (a job) on one worker thread, each model call
    ``delay`` seconds longer: a loaded machine. What each request asked for is kept (not its audio)."""

    def __init__(self, settings, engine, delay: float = 0.0) -> None:
        self.settings, self.engine, self.delay = settings, engine, delay
        self.pool = ThreadPoolExecutor(1)
        self.requests = []

    def infer(self, request):
        self.requests.append(SimpleNamespace(priority=request.priority, client=request.client,
                                             max_age_s=request.max_age_s))  # fmt: skip

        def job():
            time.sleep(self.delay)
            return self.engine.recognize(request.waveform, request.granularity, request.embedding)

        return self.pool.submit(job)

    def submit(self, fn, client=None):
        return self.pool.submit(fn, self.engine)


@pytest.fixture
def talk(speech_wav) -> tuple[np.ndarray, int]:
    """About 12 s: the speech fixture three times, with pauses, at its own rate."""
    data, rate = sf.read(speech_wav, dtype="float32")
    pause = np.zeros(rate, np.float32)
    return np.concatenate([pause, data, pause, data, pause, data, pause]), rate


def _frames(samples: np.ndarray, rate: int, seconds: float = 0.1) -> list[bytes]:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    step = int(rate * seconds)
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)]


async def _play(stream: LiveStream, frames: list[bytes], frame_s: float, speed: float) -> None:
    t0 = time.monotonic()
    for i, frame in enumerate(frames):
        await stream.room()
        stream.feed(frame)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * frame_s / speed - time.monotonic()))


def test_a_slow_server_skips_intervals_never_utterances_and_saves_the_take(settings, engine, talk):
    samples, rate = talk
    service = SlowService(settings, engine, delay=0.4)  # every model call 0.4 s: slower than 4x real time needs
    options = StreamOptions(sample_rate=rate, interval_ms=500, window_ms=2000, tags=True)
    got: list[dict] = []

    async def main():
        stream = await asyncio.to_thread(LiveStream, service, options, "test")

        async def emit(message):
            got.append(message)

        stream.start(emit)
        await _play(stream, _frames(samples, rate), 0.1, speed=4.0)
        outcome = await stream.finish()
        got.append(stream.done(outcome))
        stream.close()
        return stream, outcome

    stream, outcome = run_async(main())
    for message in got:
        check_message(message)
    kinds = [m["type"] for m in got]
    intervals = [m for m in got if m["type"] == "interval"]
    due = stream.mix.spool.samples // 8000  # intervals whose end the audio reached (k x 0.5 s)
    assert intervals and [m["index"] for m in intervals] == sorted({m["index"] for m in intervals})
    assert len(intervals) < due - 3, "a slow server must skip intervals"
    behind = [m for m in got if m["type"] == "warning" and m["reason"] == "behind"]
    assert behind and sum(m["skipped"] for m in behind) == stream.skipped == due - len(intervals)
    for m in intervals:
        assert m["end_s"] == m["index"] * 0.5 and m["start_s"] == max(0.0, m["end_s"] - 2.0)
    # every utterance is told twice (start, then its scores), in order, none skipped
    starts = [m for m in got if m["type"] == "utterance_start"]
    ends = [m for m in got if m["type"] == "utterance_end"]
    assert len(starts) >= 3 and [m["index"] for m in starts] == [m["index"] for m in ends] == list(range(len(starts)))
    assert all(e["emotion"] and e["start_s"] == s["start_s"] < e["end_s"] for s, e in zip(starts, ends, strict=True))
    assert all(e["tag"] == tag_line(e["emotion"], e["confidence"], e["start_s"], e["end_s"]) for e in ends)
    assert kinds[-1] == "done" and got[-1]["run_id"] == outcome.run.run_id
    # the run folder: the stream block holds what was sent; the audio is the whole take
    result = json.loads((outcome.run.path / "result.json").read_text("utf-8"))
    validate_result({**result, "run_id": outcome.run.run_id, "files": {}})
    assert [dict(m, type="interval") for m in result["stream"]["intervals"]] == intervals
    assert len(result["stream"]["utterances"]) == len(ends) and result["stream"]["skipped_intervals"] == stream.skipped
    assert result["granularity"] == "frame" and result["audio"]["container"] == "stream"
    assert abs(result["audio"]["duration_s"] - len(samples) / rate) < 0.01
    assert len(result["segments"]) == len(ends)  # the run's own speech segments: the same utterances, found offline
    # intervals ahead of everything else and dropped when stale; utterances in their turn; each stream its share
    live = [r for r in service.requests if r.priority == "live"]
    assert len(live) == len(intervals) and all(r.max_age_s and r.client == stream.client for r in live)
    assert [r.priority for r in service.requests if r.priority != "live"] == ["interactive"] * len(ends)


T, BIAS = 0.5, np.linspace(-0.4, 0.4, 9)  # a calibration that sharpens the tiny model's near-uniform scores


@pytest.fixture
def calibrated_settings(settings, tiny_model_dir, tmp_path):
    """Settings whose heads folder holds ``sharp``, a nine-class calibration of the tiny model."""
    from emotion2vec_webui.engine.calibration import NINE, Calibration
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    sharp = Calibration("sharp", NINE, tuple(EMOTIONS), T, BIAS, checkpoint_sha256(tiny_model_dir))
    write_calibration(tmp_path / "heads", sharp, b"", "test")
    return dataclasses.replace(settings, heads_dir=tmp_path / "heads")


def _calibrated(scores: dict) -> np.ndarray:
    """The calibration applied by hand: softmax(log p / T + bias)."""
    z = np.log(np.maximum([scores[k] for k in EMOTIONS], 1e-300)) / T + BIAS
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def _take_in_step(service, options: StreamOptions, frames: list[bytes]) -> tuple[list[dict], dict]:
    """A take fed frame by frame, each frame's interval analysed before the next (so none is skipped, whatever
    the machine's speed); every message and the saved result.json."""
    got: list[dict] = []

    async def main():
        stream = await asyncio.to_thread(LiveStream, service, options, "test")

        async def emit(message):
            got.append(message)

        stream.start(emit)
        for frame in frames:
            await stream.room()
            stream.feed(frame)
            while stream._interval_job is not None or stream.last_k < stream.mix.spool.samples // stream.interval:
                await asyncio.sleep(0.005)
        outcome = await stream.finish()
        got.append(stream.done(outcome))
        stream.close()
        return outcome

    outcome = run_async(main())
    for message in got:
        check_message(message)
    result = json.loads((outcome.run.path / "result.json").read_text("utf-8"))
    validate_result({**result, "run_id": outcome.run.run_id, "files": {}})
    return got, result


def test_a_calibrated_take_carries_the_calibrated_scores_and_abstains_below_min_confidence(
    calibrated_settings, engine, speech_wav
):
    data, rate = sf.read(speech_wav, dtype="float32")
    pause = np.zeros(rate // 2, np.float32)
    frames = _frames(np.concatenate([pause, data, pause, data, pause]), rate)
    service = SlowService(calibrated_settings, engine)
    base = {"sample_rate": rate, "interval_ms": 1000, "window_ms": 2000, "granularity": "utterance", "tags": True}
    plain, plain_result = _take_in_step(service, StreamOptions(**base), frames)
    told = [m for m in plain if m["type"] in ("interval", "utterance_end") and m["scores"]]
    assert len([m for m in told if m["type"] == "utterance_end"]) >= 2 and all("uncertain" not in m for m in told)
    # a threshold amid the calibrated confidences: some answers abstain, some do not
    expected = sorted({round(float(_calibrated(m["scores"]).max()), 4) for m in told})
    middle = len(expected) // 2
    threshold = (expected[middle - 1] + expected[middle]) / 2
    options = StreamOptions(**base, calibration="sharp", min_confidence=threshold)
    got, result = _take_in_step(service, options, frames)

    for kind in ("interval", "utterance_end"):
        before = {m["index"]: m for m in plain if m["type"] == kind}
        after = {m["index"]: m for m in got if m["type"] == kind}
        assert set(after) == set(before) and after, kind  # the same audio, the same windows and utterances
        for index, m in after.items():
            want = _calibrated(before[index]["scores"])
            np.testing.assert_allclose([m["scores"][k] for k in EMOTIONS], want, atol=1e-3)  # from 4-digit scores
            assert m["emotion"] == EMOTIONS[int(np.argmax([m["scores"][k] for k in EMOTIONS]))]
            assert m["confidence"] == max(m["scores"].values())
            assert m["uncertain"] == (m["confidence"] < threshold)
            if kind == "utterance_end":
                assert m["tag"].startswith("[uncertain: " if m["uncertain"] else f"[{m['emotion']} ")
    marks = [m["uncertain"] for m in got if m["type"] in ("interval", "utterance_end")]
    assert any(marks) and not all(marks)
    # the run: named calibration, calibrated like REST's, the messages kept as sent
    assert result["calibration"]["name"] == "sharp" and plain_result["calibration"] is None
    assert result["min_confidence"] == threshold and result["uncertain"] == (result["confidence"] < threshold)
    np.testing.assert_allclose([result["scores"][k] for k in EMOTIONS], _calibrated(plain_result["scores"]),
                               atol=2e-5)  # fmt: skip
    sent = [{k: v for k, v in m.items() if k != "type"} for m in got if m["type"] == "interval"]
    assert result["stream"]["intervals"] == sent
    assert got[-1]["type"] == "done" and got[-1]["uncertain"] == result["uncertain"]


def test_a_heads_calibration_is_folded_into_the_streams_head_answers(calibrated_settings, engine, tiny_model_dir,
                                                                       speech_wav):  # fmt: skip
    from emotion2vec_webui.engine.calibration import Calibration, head_fingerprint
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256, load_head
    from tests.head_data import write_head

    heads, checkpoint = calibrated_settings.heads_dir, checkpoint_sha256(tiny_model_dir)
    write_head(heads / "mood", checkpoint)  # moderate scores: 4-digit messages keep their logs
    head_t, head_bias = 0.5, np.array([0.4, -0.2, 0.0])
    head = load_head(heads, "mood")
    write_calibration(heads, Calibration("mood-cal", "mood", tuple(head.labels), head_t, head_bias, checkpoint,
                                         head_fingerprint(head)), b"", "test")  # fmt: skip
    data, rate = sf.read(speech_wav, dtype="float32")
    frames = _frames(np.concatenate([np.zeros(rate // 2, np.float32), data]), rate)
    service = SlowService(calibrated_settings, engine)
    base = {"sample_rate": rate, "interval_ms": 1000, "window_ms": 2000, "granularity": "utterance", "head": "mood"}
    plain, _ = _take_in_step(service, StreamOptions(**base), frames)
    got, result = _take_in_step(service, StreamOptions(**base, calibration="mood-cal", min_confidence=0.6), frames)
    before = {(m["type"], m["index"]): m for m in plain if m["type"] in ("interval", "utterance_end") and m["head"]}
    after = {(m["type"], m["index"]): m for m in got if m["type"] in ("interval", "utterance_end") and m["head"]}
    assert set(after) == set(before) and after
    for key, m in after.items():
        was = before[key]
        z = np.log([was["head"]["scores"][k] for k in head.labels]) / head_t + head_bias
        want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose([m["head"]["scores"][k] for k in head.labels], want, atol=1e-3)
        assert m["head"]["uncertain"] == (m["head"]["confidence"] < 0.6)
        assert m["scores"] == was["scores"] and m["uncertain"] == (m["confidence"] < 0.6)  # the nine: not calibrated
    assert result["calibration"]["name"] == "mood-cal" and result["calibration"]["target"] == "mood"


def test_an_unknown_or_misfitted_calibration_is_refused_before_any_audio(calibrated_settings, engine,
                                                                         tiny_model_dir):  # fmt: skip
    from emotion2vec_webui.engine.calibration import Calibration
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    # a head's calibration (for a head not asked for) and one of another model
    write_calibration(calibrated_settings.heads_dir, Calibration("for_head", "my_head", ("a", "b"), 2.0, np.zeros(2),
                                                                 checkpoint_sha256(tiny_model_dir), "f" * 64),
                      b"", "test")  # fmt: skip
    write_calibration(calibrated_settings.heads_dir, Calibration("alien", "nine", tuple(EMOTIONS), 2.0, np.zeros(9),
                                                                 "0" * 64), b"", "test")  # fmt: skip
    service = SlowService(calibrated_settings, engine)
    for name, code in (("nothing", "not_found"), ("alien", "head_mismatch"), ("for_head", "bad_request")):
        with pytest.raises(E2VError) as err:
            LiveStream(service, StreamOptions(calibration=name), "test")
        assert err.value.code == code and " / " in err.value.message, name
    assert not list(calibrated_settings.output_dir.glob("**/result.json"))


def test_memory_does_not_grow_with_the_take(settings, engine):
    """300 s of 48 kHz stereo (55 MB of PCM, 19 MB at 16 kHz float32): what the connection holds stays small."""
    rate, seconds = 48000, 300
    block = np.round(np.concatenate([tone(1.0, rate, channels=2), noise(1.0, rate, seed=3).repeat(2, 1)]) * 32767)
    frame = block.astype("<i2")
    service = SlowService(settings, engine)
    options = StreamOptions(sample_rate=rate, channels=2, interval_ms=5000, segmentation="fixed", segment_ms=10000)

    async def main():
        stream = await asyncio.to_thread(LiveStream, service, options, "test")
        sent: list[dict] = []

        async def emit(message):
            sent.append(message)

        stream.start(emit)
        await asyncio.sleep(0)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(seconds // 2):
            for part in np.array_split(frame, 20):  # 0.1 s frames
                await stream.room()
                stream.feed(part.tobytes())
                await asyncio.sleep(0)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        held = stream.mix.spool.samples
        stream.close()
        return peak, held, sent

    peak, held, sent = run_async(main())
    assert 0 <= seconds * 16000 - held < 400  # all of it kept (on disk; the resampler holds back a few samples) …
    assert peak < 6 * 2**20, f"the connection held {peak / 2**20:.1f} MB while streaming"  # … but not in memory
    assert any(m["type"] == "utterance_end" for m in sent)


@pytest.mark.parametrize(
    ("rate", "channels", "encoding"), [(22050, 2, "f32le"), (44100, 1, "pcm_s16le"), (16000, 3, "pcm_s16le")]
)
def test_the_streamed_signal_equals_the_decoded_file(tmp_path, rate, channels, encoding):
    samples = (tone(4.0, rate, channels=channels) + noise(4.0, rate, seed=2)).clip(-1, 1)
    path = write_audio(tmp_path / "a.wav", samples, rate, "wav")  # 16-bit PCM
    if encoding == "f32le":
        data, _ = sf.read(path, dtype="float32", always_2d=True)
        raw = data.astype("<f4").tobytes()
    else:
        data, _ = sf.read(path, dtype="int16", always_2d=True)
        raw = data.astype("<i2").tobytes()
    size = 4 if encoding == "f32le" else 2
    signal = Signal16k(rate, tmp_path)
    rng = np.random.default_rng(0)
    at, got = 0, []
    while at < len(raw):  # frames of random sizes, whole samples
        n = int(rng.integers(1, 3000)) * size * channels
        got.append(signal.add(mix(pcm_block(raw[at : at + n], "<f4" if size == 4 else "<i2", channels))))
        at += n
    got.append(signal.close())
    ref = decode_audio(path).waveform
    assert np.array_equal(np.concatenate(got), ref)
    assert np.array_equal(signal.spool.read(0, signal.spool.samples), ref)  # and what the run folder will hold


def test_frames_of_partial_samples_and_non_finite_floats_are_refused():
    with pytest.raises(E2VError) as err:
        pcm_block(b"\x00" * 6, "<i2", 2)
    assert err.value.code == "bad_request" and "/" in err.value.message
    with pytest.raises(E2VError) as err:
        pcm_block(np.array([0.1, np.nan], "<f4").tobytes(), "<f4", 1)
    assert err.value.code == "audio_nonfinite"


@pytest.mark.parametrize(
    "fields",
    [
        {"sample_rate": 7999}, {"sample_rate": 48001}, {"sample_rate": 16000.0}, {"sample_rate": True},
        {"encoding": "mp3"}, {"channels": 0}, {"channels": 9}, {"interval_ms": 100}, {"window_ms": 60000},
        {"segmentation": "frames"}, {"granularity": "word"}, {"speakers": "auto"}, {"speakers": "channels"},
        {"tags": "yes"}, {"head": ""}, {"head": "x" * 65}, {"head": "../up"}, {"head": 3}, {"source_name": "\u202e"}, {"samplerate": 16000},
        {"calibration": ""}, {"calibration": "../up"}, {"calibration": 3}, {"min_confidence": 1.5},
        {"min_confidence": -0.1}, {"min_confidence": "0.5"}, {"min_confidence": True}, {"min_confidence": float("nan")},
        {"interval_ms": 4000, "window_ms": 3000},
    ],
)  # fmt: skip
def test_every_bad_start_field_is_a_bilingual_bad_request(fields):
    with pytest.raises(E2VError) as err:
        StreamOptions.from_message({"type": "start", **fields})
    assert err.value.code == "bad_request"
    assert " / " in err.value.message and any("\u4e00" <= ch <= "\u9fff" for ch in err.value.message)


def test_the_start_schema_is_the_options_and_the_error_schema_the_codes():
    start = SCHEMAS["start"]["properties"]
    defaults = StreamOptions()
    for key, (low, high) in BOUNDS.items():
        assert (start[key]["minimum"], start[key]["maximum"], start[key]["default"]) == (
            low,
            high,
            getattr(defaults, key),
        )
    for key, allowed in CHOICES.items():
        assert start[key]["enum"] == list(allowed) and start[key]["default"] == getattr(defaults, key)
    option_fields = {f.name for f in dataclasses.fields(StreamOptions)}
    assert set(start) == option_fields | {"type", "token"}
    assert HEAD_NAME_RE.pattern.strip("^$") in start["head"]["pattern"]  # head names as options.py has them
    assert start["calibration"]["pattern"] == start["head"]["pattern"]  # calibration names: the same rule
    assert (start["min_confidence"]["minimum"], start["min_confidence"]["maximum"]) == MIN_CONFIDENCE
    assert set(SCHEMAS["error"]["properties"]["code"]["enum"]) == set(ERROR_CODES)
    assert set(SCHEMAS) == {"start", "stop", "interval", "utterance_start", "utterance_end", "warning", "error", "done"}
    options = StreamOptions.from_message({"type": "start", "token": "t", "sample_rate": 8000, "speakers": "channels",
                                          "channels": 2, "head": " my_head ", "calibration": "sharp",
                                          "min_confidence": 0.6})  # fmt: skip
    assert (options.sample_rate, options.channels, options.head) == (8000, 2, "my_head")
    assert (options.calibration, options.min_confidence) == ("sharp", 0.6)
    jsonschema.validate({"type": "start", "sample_rate": 8000, "channels": 2, "speakers": "channels"}, SCHEMAS["start"])
