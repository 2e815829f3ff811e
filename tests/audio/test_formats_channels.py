"""Phone, Windows and video formats; the channel choice (mix, left, right, an index) and the mix warnings.

The files are generated with Debian's ffmpeg (tests skip without it; the
app itself needs no system FFmpeg: PyAV's wheels bundle it). AMR has no
encoder in Debian's ffmpeg, so the .amr file is written by hand (the AMR-NB
storage format: a magic line, then 12.2 kbit/s frames) and put into a .3gp
with ``-c:a copy``, as phones do. The app answers the REST cases (in-process).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from emotion2vec_webui.audio.decode import _sniff_format, decode_audio, pcm16_from_float
from emotion2vec_webui.audio.format import FORMATS, DecodeOptions, normalise_channels
from emotion2vec_webui.errors import AudioError
from tests.spec_check import check_result

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")

# name → ffmpeg output arguments (input: a 1 s stereo 44.1 kHz tone, and for videos a test pattern)
ENCODED = {
    "clip.wma": ["-c:a", "wmav2"],
    "clip.mkv": ["-c:a", "libvorbis"],
    "clip.caf": ["-c:a", "alac"],
    "clip.wv": ["-c:a", "wavpack"],
    "clip.ac3": ["-c:a", "ac3"],
    "clip.m4v": ["-c:a", "aac"],
    "clip.avi": ["-c:a", "pcm_s16le"],
}
CONTAINERS = {".wma": "asf", ".mkv": "matroska", ".caf": "caf", ".wv": "wv", ".ac3": "ac3", ".m4v": "mov",
              ".avi": "avi", ".amr": "amr", ".3gp": "mov", ".mp4": "mov", ".mov": "mov"}  # fmt: skip


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([FFMPEG, "-v", "error", "-y", *args], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-800:]


def amr_nb(seconds: float, seed: int = 0) -> bytes:
    """An AMR-NB file: ``#!AMR\\n`` and 50 frames/s of mode 7 (12.2 kbit/s: 1 header + 31 payload bytes)."""
    rng = np.random.default_rng(seed)
    frames = [bytes([7 << 3 | 0x04]) + rng.integers(0, 256, 31, dtype=np.uint8).tobytes()
              for _ in range(int(seconds * 50))]  # fmt: skip
    return b"#!AMR\n" + b"".join(frames)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("media")
    t = np.arange(44100) / 44100
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.3 * np.sin(2 * np.pi * 523 * t)], axis=1)
    src = folder / "src.wav"
    sf.write(src, stereo.astype(np.float32), 44100, subtype="PCM_16")
    out = {}
    for name, codec in ENCODED.items():
        _ffmpeg("-i", str(src), *codec, str(folder / name))
        out[name] = folder / name
    (folder / "clip.amr").write_bytes(amr_nb(1.2))
    out["clip.amr"] = folder / "clip.amr"
    _ffmpeg("-i", str(folder / "clip.amr"), "-c:a", "copy", str(folder / "phone.3gp"))  # AMR in 3GP, as phones do
    out["phone.3gp"] = folder / "phone.3gp"
    video = ["-f", "lavfi", "-i", "testsrc=d=1.2:s=64x48:r=10"]
    _ffmpeg(*video, "-i", str(src), "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(folder / "video.mp4"))
    out["video.mp4"] = folder / "video.mp4"
    _ffmpeg(*video, "-i", str(src), "-shortest", "-c:v", "mpeg4", "-c:a", "pcm_s16le", str(folder / "video.mov"))
    out["video.mov"] = folder / "video.mov"
    _ffmpeg(*video, "-c:v", "mpeg4", str(folder / "silent.mp4"))  # a video without an audio stream
    out["silent.mp4"] = folder / "silent.mp4"
    # two audio streams: 44.1 kHz stereo first, then 22.05 kHz mono
    _ffmpeg("-i", str(src), "-i", str(src), "-map", "0:a", "-map", "1:a", "-c:a", "flac", "-ar:a:1", "22050",
            "-ac:a:1", "1", str(folder / "two.mkv"))  # fmt: skip
    out["two.mkv"] = folder / "two.mkv"
    out["src.wav"] = src
    return out


MEDIA = [*ENCODED, "clip.amr", "phone.3gp", "video.mp4", "video.mov"]


@needs_ffmpeg
@pytest.mark.parametrize("name", MEDIA)
def test_format_decodes(media, name):
    d = decode_audio(media[name])
    assert d.container == CONTAINERS[Path(name).suffix]
    assert 0.9 < d.duration_s < 1.4, d.duration_s
    assert d.audio_stream == 0 and d.channels == "mix"
    assert np.isfinite(d.waveform).all() and np.abs(d.waveform).max() > 0.01


def test_sniff_names_every_listed_format_kind():
    # magic bytes → kind; every kind here has an explicit demuxer or libsndfile (format.FORMATS)
    kinds = {f.kind for f in FORMATS}
    samples = {
        b"MAC \x96\x0f" + b"\0" * 30: "ape",
        b"wvpk" + b"\0" * 30: "wv",
        b"#!AMR-WB\n" + b"\0" * 30: "amr",
        bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\0" * 30: "asf",
        b"\x0b\x77\x00\x00\x00\x40" + b"\0" * 30: "ac3",
        b"\x0b\x77\x00\x00\x00\x80" + b"\0" * 30: "eac3",
        b"FLV\x01" + b"\0" * 30: "flv",
        b"RIFF\0\0\0\0AVI LIST" + b"\0" * 30: "avi",
        b"\x00\x00\x01\xba" + b"\0" * 30: "mpeg",
        (b"\x47" + b"\0" * 187) * 4: "mpegts",
        b"caff" + b"\0" * 30: "caf",
    }
    for data, kind in samples.items():
        assert _sniff_format(data) == kind and kind in kinds
    # playlists and image formats stay unrecognised: FFmpeg never probes for them
    for data in (b"#EXTM3U\n#EXT-X-VERSION:3\n", b"ffconcat version 1.0\nfile /etc/passwd\n", b"\x89PNG\r\n\x1a\n" * 4):
        assert _sniff_format(data) is None


@needs_ffmpeg
def test_video_without_audio_is_audio_no_stream(media):
    with pytest.raises(AudioError) as err:
        decode_audio(media["silent.mp4"])
    assert err.value.code == "audio_no_stream"


@needs_ffmpeg
def test_audio_stream_picks_the_stream(media):
    first = decode_audio(media["two.mkv"])
    second = decode_audio(media["two.mkv"], options=DecodeOptions(audio_stream=1))
    assert (first.original_sample_rate, first.original_channels, first.audio_stream) == (44100, 2, 0)
    assert (second.original_sample_rate, second.original_channels, second.audio_stream) == (22050, 1, 1)
    with pytest.raises(AudioError) as err:
        decode_audio(media["two.mkv"], options=DecodeOptions(audio_stream=2))
    assert err.value.code == "audio_no_stream"


def _expected_channel(path: Path, index: int) -> np.ndarray:
    """The channel read by soundfile, resampled one-shot (soxr HQ), on the PCM16 grid: what the model must see."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    out = soxr.resample(np.ascontiguousarray(data[:, index]), rate, 16000, quality="HQ")
    return pcm16_from_float(out).astype(np.float32) / 32768.0


def _stereo(tmp_path: Path, left: np.ndarray, right: np.ndarray, rate: int = 44100) -> Path:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), rate, subtype="PCM_16")
    return path


def _tone(freq: float, seconds: float = 1.0, rate: int = 44100, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize(("choice", "index"), [("left", 0), ("right", 1), ("0", 0), ("1", 1)])
def test_one_channel_is_bit_exact(tmp_path, choice, index):
    path = _stereo(tmp_path, _tone(330), _tone(523, amp=0.2))
    d = decode_audio(path, options=DecodeOptions(choice))
    assert d.channel_index == index and d.channels == choice
    np.testing.assert_array_equal(d.waveform, _expected_channel(path, index))
    assert not any("channel" in w for w in d.warnings)


def test_channel_choice_checks():
    assert [normalise_channels(x) for x in (None, "", "MIX", " Left", 3, "07")] == ["mix", "mix", "mix", "left", "3", "7"]
    for bad in ("both", "-1", "256", "1.5"):
        with pytest.raises(ValueError):
            normalise_channels(bad)


def test_missing_channel_is_audio_no_stream(tmp_path):
    path = _stereo(tmp_path, _tone(330), _tone(523))
    with pytest.raises(AudioError) as err:
        decode_audio(path, options=DecodeOptions("2"))
    assert err.value.code == "audio_no_stream" and "2" in err.value.message


@pytest.mark.parametrize(
    ("right_gain", "warning"),
    [(-0.9, "opposite in phase"), (0.005, "dB quieter"), (0.0, "silent"), (0.8, None)],
)
def test_mix_warnings(tmp_path, right_gain, warning):
    left = _tone(330)
    path = _stereo(tmp_path, left, right_gain * left)
    mixed = decode_audio(path)
    found = [w for w in mixed.warnings if "channel" in w]
    if warning is None:
        assert found == []
    else:
        assert len(found) == 1 and warning in found[0] and " / " in found[0], mixed.warnings  # bilingual
        assert not [w for w in decode_audio(path, options=DecodeOptions("left")).warnings if "channel" in w]


# -- through REST: the app in-process -------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_model_dir, engine):
    """The whole app (``create_app``: middleware, routes, the decoder pool) through FastAPI's TestClient;
    uvicorn is not under test here. 5 s of audio and 4 MB uploads at most."""
    import dataclasses

    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", api_token=None,
                            output_dir=tmp_path_factory.mktemp("formats") / "outputs", max_duration_s=5,
                            max_upload_mb=4)  # fmt: skip
    with TestClient(create_app(s, Service(s, engine))) as c:
        yield c


def _post(client, path: Path, **fields) -> httpx.Response:
    return client.post(
        "/api/v1/recognize",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        data={"extract_embedding": "false", **fields},
    )


@needs_ffmpeg
@pytest.mark.parametrize("name", ["clip.wma", "clip.amr", "phone.3gp", "video.mp4", "clip.mkv", "clip.caf"])
def test_formats_through_rest(client, media, name):
    r = _post(client, media[name])
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body)
    assert body["audio"]["container"] == CONTAINERS[Path(name).suffix]
    assert body["audio"]["channels"] == "mix" and body["audio"]["audio_stream"] == 0


@needs_ffmpeg
def test_silent_video_through_rest(client, media):
    r = _post(client, media["silent.mp4"])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "audio_no_stream"


def test_channels_left_through_rest(client, tmp_path):
    path = _stereo(tmp_path, _tone(330), _tone(523, amp=0.2))
    r = _post(client, path, channels="left")
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body)
    assert (body["audio"]["channels"], body["audio"]["channel_index"], body["audio"]["original_channels"]) == (
        "left", 0, 2,
    )  # fmt: skip
    wav = client.get(body["files"]["processed_audio.wav"]).content
    got, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(got, _expected_channel(path, 0))  # bit-exact: the left channel resampled
    saved = json.loads(client.get(body["files"]["result.json"]).content)
    assert saved["audio"]["channels"] == "left"


def test_channels_bad_value_through_rest(client, tmp_path):
    path = _stereo(tmp_path, _tone(330), _tone(523))
    r = _post(client, path, channels="both")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_request", r.text
    r = _post(client, path, channels="5")
    assert r.status_code == 422 and r.json()["error"]["code"] == "audio_no_stream", r.text
