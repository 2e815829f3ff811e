"""Regenerate the example clips shown under the Recognize tab.

Synthetic speech from espeak-ng (``apt-get install espeak-ng``), 16 kHz mono,
encoded as Ogg/Opus at 24 kbit/s (a few KB per second). The voices are
synthetic, so the clips show the workflow (upload, frame timeline, segments),
not a model's accuracy. Run ``python -m emotion2vec_webui.examples.make_examples``.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent

# file name → (text, espeak-ng voice, words per minute, pitch 0-99), shown in this order.
CLIPS: dict[str, tuple[str, str, int, int]] = {
    "en_excited.opus": ("Wow! We actually won the game! I can't believe it, this is amazing!", "en-us", 185, 80),
    "en_calm.opus": ("The meeting is at three o'clock. Please bring the report and the slides.", "en-gb", 150, 45),
    "zh_greeting.opus": ("你好，今天天气真好。我们一起去公园散步吧！", "cmn", 150, 60),
    "en_sad.opus": ("I waited all evening, but nobody came. I guess it does not matter anymore.", "en-us", 120, 25),
}

# file name → the chip's label under the Recognize tab, both languages (the file name is no label).
LABELS: dict[str, str] = {
    "en_excited.opus": "兴奋（英语）/ excited (English)",
    "en_calm.opus": "平静（英语）/ calm (English)",
    "zh_greeting.opus": "问候（中文）/ greeting (Chinese)",
    "en_sad.opus": "伤心（英语）/ sad (English)",
}


def example_label(path: Path) -> str:
    """The chip label of an example clip (its file name when it has none)."""
    return LABELS.get(Path(path).name, Path(path).stem.replace("_", " "))


def example_paths() -> list[Path]:
    """The example clips that exist, in display order."""
    return [EXAMPLES_DIR / name for name in CLIPS if (EXAMPLES_DIR / name).is_file()]


def make_examples(out_dir: Path = EXAMPLES_DIR) -> list[Path]:
    """Write every clip in :data:`CLIPS` to ``out_dir``; returns their paths.

    Raises:
        RuntimeError: espeak-ng is not installed.
    """
    import soxr

    from emotion2vec_webui.testaudio import speech

    paths = []
    for name, (text, voice, speed, pitch) in CLIPS.items():
        samples, rate = speech(text, voice=voice, speed=speed, pitch=pitch)
        if rate != 16000:
            samples = soxr.resample(samples, rate, 16000)
        target = out_dir / name
        tmp = target.with_name(f".{name}.tmp.opus")
        _write_opus(tmp, samples, 16000)
        tmp.replace(target)
        paths.append(target)
    return paths


def _write_opus(path: Path, samples, rate: int, bit_rate: int = 24000) -> None:
    """Mono Ogg/Opus at ``bit_rate`` (testaudio.write_audio uses the codec's larger default)."""
    from fractions import Fraction

    import av
    import numpy as np

    data = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1, 1)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = bit_rate
        stream.time_base = Fraction(1, rate)
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame_size = rate // 50  # 20 ms, Opus's usual frame
        for start in range(0, len(data), frame_size):
            chunk = data[start : start + frame_size]
            arr = (chunk * 32767).astype(np.int16) if fmt.startswith("s16") else chunk
            frame = av.AudioFrame.from_ndarray(arr.reshape(1, -1), format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


if __name__ == "__main__":
    for p in make_examples():
        print(f"{p.name}: {p.stat().st_size / 1024:.1f} KB")
