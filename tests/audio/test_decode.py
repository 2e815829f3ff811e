"""audio.decode_audio: formats, rates, channels, limits and every error code."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.decode import AudioLimits, decode_audio, write_wav_pcm16
from emotion2vec_webui.audio.signals import extension, noise, tone, write_audio
from emotion2vec_webui.errors import AudioError

MATRIX = [
    ("wav", 8000, 1), ("wav", 44100, 2), ("wav", 48000, 6), ("wav24", 96000, 2), ("wav32", 22050, 1),
    ("wavf32", 32000, 3), ("wavu8", 11025, 1), ("wavulaw", 8000, 1), ("flac", 48000, 2), ("flac", 192000, 1),
    ("ogg", 44100, 2), ("ogg", 16000, 1), ("aiff", 44100, 2), ("au", 16000, 1),
    ("mp3", 44100, 2), ("mp3", 8000, 1), ("m4a", 48000, 2), ("m4a", 16000, 6),
    ("opus", 48000, 2), ("opus", 16000, 1), ("webm", 48000, 1), ("webm", 24000, 6),
]


@pytest.mark.parametrize("fmt,rate,channels", MATRIX)
def test_decodes_every_format_rate_and_channel_count(tmp_path, fmt, rate, channels):
    path = write_audio(tmp_path / f"clip.{extension(fmt)}", tone(1.5, rate, channels=channels), rate, fmt)
    d = decode_audio(path)
    assert d.sample_rate == 16000
    assert d.waveform.dtype == np.float32 and d.waveform.ndim == 1
    assert d.original_channels == channels
    # Lossy codecs may store at their own rate (opus is always 48 kHz) and pad a few ms.
    if fmt not in ("opus", "webm"):
        assert d.original_sample_rate == rate
    assert abs(d.duration_s - 1.5) < 0.08
    assert d.source_name == path.name
    assert np.max(np.abs(d.waveform)) <= 1.0
    assert np.sqrt(np.mean(d.waveform**2)) > 0.05  # the tone survived


def test_bytes_and_path_give_the_same_signal(tmp_path):
    path = write_audio(tmp_path / "a.flac", tone(1.0, 44100, channels=2), 44100, "flac")
    a = decode_audio(path)
    b = decode_audio(path.read_bytes(), source_name="a.flac")
    assert np.array_equal(a.waveform, b.waveform)


def test_mono_is_the_mean_of_channels(tmp_path):
    x = tone(1.0, 16000)[:, 0]
    stereo = np.stack([x, 0.5 * x], axis=1)
    path = write_audio(tmp_path / "s.wav", stereo, 16000, "wavf32")
    d = decode_audio(path)
    np.testing.assert_allclose(d.waveform, 0.75 * x, atol=1 / 32768)


def test_processed_signal_round_trips_through_pcm16_exactly(tmp_path):
    d = decode_audio(write_audio(tmp_path / "a.mp3", tone(1.0, 44100, channels=2), 44100, "mp3"))
    buf = io.BytesIO()
    write_wav_pcm16(buf, d.waveform)
    back, rate = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")
    assert rate == 16000
    assert np.array_equal(back, d.waveform)


def test_over_full_scale_float_is_scaled_not_clipped(tmp_path):
    x = 3.0 * tone(1.0, 16000)[:, 0] / 0.3
    d = decode_audio(write_audio(tmp_path / "loud.wav", x, 16000, "wavf32"))
    assert np.max(np.abs(d.waveform)) <= 1.0
    assert any("full scale" in w for w in d.warnings)


def _code(source, **kw) -> str:
    with pytest.raises(AudioError) as info:
        decode_audio(source, **kw)
    assert info.value.message  # a sentence a person can read
    return info.value.code


def test_error_codes(tmp_path):
    assert _code(b"", source_name="empty.wav") == "audio_empty"
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _code(tmp_path / "empty.wav") == "audio_empty"
    assert _code(b"hello, I am text", source_name="text.wav") == "audio_undecodable"
    assert _code(b"\x89PNG\r\n\x1a\n" + b"\0" * 200, source_name="image.mp3") == "audio_undecodable"
    assert _code(b"PK\x03\x04" + b"\0" * 200, source_name="archive.ogg") == "audio_undecodable"
    nan = tone(1.0, 16000)[:, 0].copy()
    nan[100] = np.nan
    assert _code(write_audio(tmp_path / "nan.wav", nan, 16000, "wavf32")) == "audio_nonfinite"
    inf = tone(1.0, 16000)[:, 0].copy()
    inf[5] = np.inf
    assert _code(write_audio(tmp_path / "inf.wav", inf, 16000, "wavf32")) == "audio_nonfinite"
    short = write_audio(tmp_path / "short.wav", tone(0.01, 16000), 16000, "wav")
    assert _code(short) == "audio_too_short"
    two_s = write_audio(tmp_path / "two.wav", tone(2.0, 16000), 16000, "wav")
    assert _code(two_s, limits=AudioLimits(max_duration_s=1.0)) == "audio_too_long"
    assert _code(two_s, limits=AudioLimits(max_bytes=1000)) == "file_too_large"
    assert _code(two_s, limits=AudioLimits(min_duration_s=5.0)) == "audio_too_short"
    assert _code(tmp_path / "missing.wav") == "audio_undecodable"


def test_duration_limit_is_enforced_while_decoding(tmp_path):
    # A 60 s mp3 with a 2 s limit: rejected after decoding just past 2 s.
    path = write_audio(tmp_path / "long.mp3", tone(60.0, 16000), 16000, "mp3")
    assert _code(path, limits=AudioLimits(max_duration_s=2.0)) == "audio_too_long"


def test_lying_wav_headers(tmp_path):
    good = write_audio(tmp_path / "g.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    one_hz = bytearray(good)
    one_hz[24:28] = struct.pack("<I", 1)
    assert _code(bytes(one_hz), source_name="1hz.wav") == "audio_undecodable"
    zero_rate = bytearray(good)
    zero_rate[24:28] = struct.pack("<I", 0)
    assert _code(bytes(zero_rate), source_name="0hz.wav") == "audio_undecodable"
    zero_ch = bytearray(good)
    zero_ch[22:24] = struct.pack("<H", 0)
    assert _code(bytes(zero_ch), source_name="0ch.wav") == "audio_undecodable"
    # A data size far beyond the file: decoded as far as it goes, with a warning.
    huge = bytearray(good)
    huge[40:44] = struct.pack("<I", 0x7FFFFFF0)
    d = decode_audio(bytes(huge), source_name="huge.wav")
    assert abs(d.duration_s - 1.0) < 0.01
    assert any("truncated" in w for w in d.warnings)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus", "webm"])
def test_truncated_file_is_analysed_with_a_warning(tmp_path, fmt):
    # Noise makes the audio pages dominate the file (a pure tone compresses below the codec headers).
    signal = tone(4.0, 44100) + noise(4.0, 44100, amp=0.1)
    data = write_audio(tmp_path / f"t.{fmt}", signal, 44100, fmt).read_bytes()
    d = decode_audio(data[: int(len(data) * 0.5)], source_name=f"t.{fmt}")
    assert 0.5 < d.duration_s < 3.5
    assert d.warnings, "a truncated file must carry a warning"


def test_lossless_content_is_preserved(tmp_path):
    x = tone(1.0, 16000)[:, 0]
    d = decode_audio(write_audio(tmp_path / "x.flac", x, 16000, "flac"))
    np.testing.assert_allclose(d.waveform, x, atol=2 / 32768)


def test_truncated_m4a_without_its_index_is_undecodable(tmp_path):
    # mp4 writes its index (moov) at the end: without it nothing can be located.
    data = write_audio(tmp_path / "t.m4a", tone(2.0, 44100), 44100, "m4a").read_bytes()
    assert _code(data[: len(data) // 2], source_name="t.m4a") == "audio_undecodable"


@pytest.mark.parametrize(
    "fmt,rate,channels", [("wav", 44100, 2), ("flac", 192000, 8), ("mp3", 22050, 1), ("ogg", 48000, 3)]
)
def test_streamed_decode_equals_the_one_shot_pipeline(tmp_path, monkeypatch, fmt, rate, channels):
    """Per-block mono mix + soxr.ResampleStream == whole-file mean + one-shot soxr.resample, bit for bit."""
    import soxr

    from emotion2vec_webui.audio import decode as audio
    from emotion2vec_webui.audio import readers

    x = tone(3.0, rate, channels=channels) + np.repeat(noise(3.0, rate, amp=0.05), channels, axis=1)
    path = write_audio(tmp_path / f"s.{extension(fmt)}", x, rate, fmt)
    got = decode_audio(path).waveform
    # The reference: every sample at once (soundfile reads the same samples PyAV's frames hold).
    if fmt in ("wav", "flac"):
        samples, _ = sf.read(path, dtype="float32", always_2d=True)
    else:
        import av

        with av.open(str(path)) as c:
            frames = [b for f in c.decode(audio=0) for b in readers._frame_blocks(f, "s")]
        samples = np.concatenate(frames)
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if samples.shape[1] > 1 else samples[:, 0]
    one_shot = soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(one_shot)))
    want = audio.pcm16_from_float(one_shot / peak if peak > 1 else one_shot).astype(np.float32) / 32768.0
    assert np.array_equal(got, want)
    # Small blocks (a few frames each) give the same signal too.
    monkeypatch.setattr(readers, "BLOCK_SAMPLES", 30_000)
    assert np.array_equal(decode_audio(path).waveform, got)


def test_pcm16_conversion_in_blocks_matches_the_whole_array(monkeypatch):
    from emotion2vec_webui.audio import decode as audio
    from emotion2vec_webui.audio import readers

    x = np.random.default_rng(1).uniform(-1.2, 1.2, 50_001).astype(np.float32)
    want = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    monkeypatch.setattr(readers, "BLOCK_SAMPLES", 4096)
    assert np.array_equal(audio.pcm16_from_float(x), want)


def test_a_long_many_channel_file_keeps_only_blocks_in_memory(tmp_path):
    """A 60 s 8-channel 192 kHz FLAC (92 M samples; 369 MB as float32) decodes with < 60 MB of Python allocations."""
    import tracemalloc

    block = np.zeros((192000, 8), np.int16)
    path = tmp_path / "bomb.flac"
    with sf.SoundFile(path, "w", 192000, 8, subtype="PCM_16", format="FLAC") as f:
        for _ in range(60):
            f.write(block)
    tracemalloc.start()
    try:  # 1000 s of 48 kHz stereo: an input-sample budget (96 M) that holds the 92 M samples
        d = decode_audio(path, limits=AudioLimits(max_duration_s=1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.original_channels == 8 and abs(d.duration_s - 60) < 0.01
    assert peak < 60 * 2**20, f"peak {peak / 2**20:.0f} MB"
