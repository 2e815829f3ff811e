"""Generated audio for tests, benchmarks and example clips: tones, noise, espeak-ng speech, any format.

Encoding uses soundfile (wav/flac/ogg/aiff/au) and PyAV (mp3, m4a, opus, webm),
both pip-installed; espeak-ng is optional (a Debian package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

# format → (container for PyAV or None for soundfile, codec or soundfile subtype)
FORMATS: dict[str, tuple[str | None, str]] = {
    "wav": (None, "PCM_16"),
    "wav24": (None, "PCM_24"),
    "wav32": (None, "PCM_32"),
    "wavf32": (None, "FLOAT"),
    "wavu8": (None, "PCM_U8"),
    "wavulaw": (None, "ULAW"),
    "flac": (None, "PCM_16"),
    "ogg": (None, "VORBIS"),
    "aiff": (None, "PCM_16"),
    "au": (None, "PCM_16"),
    "mp3": ("mp3", "libmp3lame"),
    "m4a": ("mp4", "aac"),
    "opus": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
}
_SF_FORMAT = {"flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "au": "AU"}
_EXT = {"wav24": "wav", "wav32": "wav", "wavf32": "wav", "wavu8": "wav", "wavulaw": "wav"}


def extension(fmt: str) -> str:
    """The file extension for a FORMATS key."""
    return _EXT.get(fmt, fmt)


def tone(
    seconds: float, sample_rate: int = 16000, freq: float = 220.0, channels: int = 1, amp: float = 0.3
) -> np.ndarray:
    """A harmonic tone with a slow vibrato, ``[samples, channels]`` float32 (channels differ in level)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f = freq * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / sample_rate
    x = amp * (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)) / 1.6
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def noise(seconds: float, sample_rate: int = 16000, amp: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal((int(seconds * sample_rate), 1))).astype(np.float32)


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> Path:
    """Encode ``samples`` (``[n]`` or ``[n, channels]`` float in [-1, 1]) as ``fmt`` (a FORMATS key)."""
    path = Path(path)
    if samples.ndim == 1:
        samples = samples[:, None]
    container, codec = FORMATS[fmt]
    if container is None:
        import soundfile as sf

        sf.write(path, samples, sample_rate, subtype=codec, format=_SF_FORMAT.get(fmt, "WAV"))
        return path
    _write_pyav(path, samples, sample_rate, container, codec)
    return path


def _write_pyav(path: Path, samples: np.ndarray, sample_rate: int, container: str, codec: str) -> None:
    import av

    channels = samples.shape[1]
    rate = sample_rate
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    if codec == "libmp3lame" and rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
        rate = 48000
    if rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, sample_rate, rate).astype(np.float32)
    layout = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1"}.get(channels)
    if layout is None:
        raise ValueError(f"cannot encode {channels} channels with {codec}")
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.time_base = Fraction(1, rate)
        fmt_name = (
            stream.codec_context.codec.audio_formats[0].name if stream.codec_context.codec.audio_formats else "fltp"
        )
        frame_size = 960 if "opus" in codec else 1152 if "mp3" in codec else 1024
        pts = 0
        data = np.clip(samples, -1, 1)
        for start in range(0, len(data), frame_size):
            chunk = data[start : start + frame_size]
            if fmt_name.startswith("s16"):
                arr = (chunk * 32767).astype(np.int16)
            elif fmt_name.startswith("s32"):
                arr = (chunk * 2147483647.0).astype(np.int32)
            else:
                arr = chunk.astype(np.float32)
            arr = arr.T.copy() if fmt_name.endswith("p") else arr.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(arr, format=fmt_name, layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            pts += len(chunk)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speech(text: str, voice: str = "en", speed: int = 160, pitch: int = 50) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; returns (float32 mono samples, sample rate).

    Raises:
        RuntimeError: espeak-ng is not installed (``apt-get install espeak-ng``).
    """
    import soundfile as sf

    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        data, rate = sf.read(out, dtype="float32")
    return data, rate
