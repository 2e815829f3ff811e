"""What the model sees: the one definition of its input format and frame grid.

Every module that cuts, counts or times samples and frames imports these;
none defines its own copy.
"""

SAMPLE_RATE = 16000  # Hz: decoded audio is always 16 kHz mono float32
MIN_MODEL_SAMPLES = 400  # the conv front-end's receptive field: fewer samples give no frame
FRAME_HOP = 320  # samples per feature frame (20 ms)
FRAME_HOP_S = FRAME_HOP / SAMPLE_RATE  # 0.02 s
FRAME_RATE = SAMPLE_RATE // FRAME_HOP  # 50 frames per second


def num_frames(num_samples: int) -> int:
    """Feature frames the model emits for ``num_samples`` samples (``(n - 400) // 320 + 1``, 0 when too short)."""
    return 0 if num_samples < MIN_MODEL_SAMPLES else (num_samples - MIN_MODEL_SAMPLES) // FRAME_HOP + 1
