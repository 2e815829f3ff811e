"""What the model sees: the one definition of its input format and frame grid, and what decoding returns.

Every module that cuts, counts or times samples and frames imports these;
none defines its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000  # Hz: decoded audio is always 16 kHz mono float32
MIN_MODEL_SAMPLES = 400  # the conv front-end's receptive field: fewer samples give no frame
FRAME_HOP = 320  # samples per feature frame (20 ms)
FRAME_HOP_S = FRAME_HOP / SAMPLE_RATE  # 0.02 s
FRAME_RATE = SAMPLE_RATE // FRAME_HOP  # 50 frames per second


def num_frames(num_samples: int) -> int:
    """Feature frames the model emits for ``num_samples`` samples (``(n - 400) // 320 + 1``, 0 when too short)."""
    return 0 if num_samples < MIN_MODEL_SAMPLES else (num_samples - MIN_MODEL_SAMPLES) // FRAME_HOP + 1


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # float32, mono, SAMPLE_RATE Hz: exactly what the model sees
    sample_rate: int  # always SAMPLE_RATE
    original_sample_rate: int  # the file's own rate
    original_channels: int  # the file's channel count before the mono mix
    source_name: str  # the file name shown to people (never a server path)
    container: str  # detected format: wav, flac, mp3, ogg, mp4, webm, …
    warnings: tuple[str, ...] = ()  # e.g. truncation, clipping
    decode_s: float = 0.0  # seconds spent decoding
    resample_s: float = 0.0  # seconds spent resampling

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 100 * 1024 * 1024  # E2V_MAX_UPLOAD_MB
    max_duration_s: float = 600.0  # E2V_MAX_DURATION_S
    min_duration_s: float = 0.1  # E2V_MIN_DURATION_S

    @classmethod
    def from_settings(cls, settings) -> AudioLimits:
        return cls(settings.max_upload_bytes, settings.max_duration_s, settings.min_duration_s)
