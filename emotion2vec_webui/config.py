"""Settings read from ``E2V_*`` environment variables, in one frozen dataclass.

Every adapter calls :func:`load_settings` once; command-line flags override
fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a number") from exc


def _int(name: str, default: int) -> int:
    return int(_float(name, float(default)))


@dataclass(frozen=True)
class Settings:
    model: str = "emotion2vec_plus_large"  # name (docs/README.md) or local directory
    hub: str = "ms"  # "ms" (ModelScope) or "hf" (Hugging Face)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 | int8
    output_dir: Path = Path("outputs")  # root of the run folders
    max_upload_mb: float = 100.0  # bytes cap on an input file
    max_duration_s: float = 600.0  # longest audio accepted
    min_duration_s: float = 0.1  # shortest audio accepted
    max_queue: int = 32  # waiting requests beyond which the server answers 503
    input_dirs: tuple[Path, ...] = ()  # folders `audio_path` may read from (empty: none)
    api_token: str | None = None  # when set, the API needs `Authorization: Bearer …`
    auth_failures_per_min: float = 10.0  # wrong tokens/logins per client a minute, a minute's worth saved (0: off)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    log_dir: Path = Path("logs")  # rotating server log
    frame_smoothing_s: float = 0.5  # window for smoothing frame logits
    window_s: float = 30.0  # long audio is processed in windows of this length
    vad_max_segment_s: float = 10.0  # speech segments (segmentation=vad) longer than this are split at pauses
    header_timeout_s: float = 10.0  # a connection's request line and headers must arrive within this
    body_timeout_s: float = 10.0  # a request body that sends nothing for this long is answered 408
    body_min_rate_kb: float = 8.0  # KB/s a body must average once body_timeout_s of waiting has passed (0: off)
    max_batch_upload_mb: float = 500.0  # cap on one request to the UI's upload route (a batch sends all files at once)
    upload_mb_per_min: float = 1024.0  # UI upload bytes per client per minute (token bucket, 429 beyond)
    upload_requests_per_min: int = 600  # UI upload requests per client per minute
    min_free_mb: float = 100.0  # /readyz says storage_full when the outputs disk has less free space
    url_fetch: bool = True  # E2V_URL_FETCH=off: audio_url is refused (url_forbidden)
    url_allow: tuple[str, ...] = ()  # E2V_URL_ALLOW: hosts and CIDRs audio_url may reach though not public
    url_timeout_s: float = 60.0  # E2V_URL_TIMEOUT_S: a whole download, redirects included
    url_connect_timeout_s: float = 5.0  # E2V_URL_CONNECT_TIMEOUT_S: name lookup plus TCP/TLS connect, per hop
    url_read_timeout_s: float = 15.0  # E2V_URL_READ_TIMEOUT_S: the longest wait for the next bytes
    heads_dir: Path = Path("heads")  # trained classifier heads, one folder each (E2V_HEADS_DIR)
    asr_model: str = "sensevoice_small"  # conversations' ASR: name, hub id or directory (E2V_ASR_MODEL)
    speaker_model: str = "campplus"  # conversations' speaker model (CAM++): name, hub id or directory (E2V_SPEAKER_MODEL)
    extra: dict[str, str] = field(default_factory=dict)  # unused; keeps replace() simple

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def load_settings() -> Settings:
    """Read settings from the environment (``E2V_*``), defaults per docs/settings.md."""
    env = os.environ
    dirs = tuple(Path(p).expanduser() for p in env.get("E2V_INPUT_DIRS", "").split(os.pathsep) if p.strip())
    hub = env.get("E2V_HUB", "ms").strip().lower() or "ms"
    if hub in ("modelscope",):
        hub = "ms"
    if hub in ("huggingface", "hugging_face"):
        hub = "hf"
    return Settings(
        model=env.get("E2V_MODEL", "").strip() or "emotion2vec_plus_large",
        hub=hub,
        device=env.get("E2V_DEVICE", "auto").strip() or "auto",
        precision=env.get("E2V_PRECISION", "auto").strip() or "auto",
        output_dir=Path(env.get("E2V_OUTPUT_DIR", "").strip() or "outputs"),
        max_upload_mb=_float("E2V_MAX_UPLOAD_MB", 100.0),
        max_duration_s=_float("E2V_MAX_DURATION_S", 600.0),
        min_duration_s=_float("E2V_MIN_DURATION_S", 0.1),
        max_queue=_int("E2V_MAX_QUEUE", 32),
        input_dirs=dirs,
        api_token=env.get("E2V_API_TOKEN") or None,
        auth_failures_per_min=max(0.0, _float("E2V_AUTH_FAILURES_PER_MIN", 10.0)),
        log_level=(env.get("E2V_LOG_LEVEL", "INFO").strip() or "INFO").upper(),
        log_format=env.get("E2V_LOG_FORMAT", "text").strip().lower() or "text",
        log_dir=Path(env.get("E2V_LOG_DIR", "").strip() or "logs"),
        frame_smoothing_s=_float("E2V_FRAME_SMOOTHING_S", 0.5),
        window_s=_float("E2V_WINDOW_S", 30.0),
        vad_max_segment_s=_float("E2V_VAD_MAX_SEGMENT_S", 10.0),
        header_timeout_s=_float("E2V_HEADER_TIMEOUT_S", 10.0),
        body_timeout_s=_float("E2V_BODY_TIMEOUT_S", 10.0),
        body_min_rate_kb=_float("E2V_BODY_MIN_RATE_KB", 8.0),
        max_batch_upload_mb=_float("E2V_MAX_BATCH_UPLOAD_MB", 500.0),
        upload_mb_per_min=_float("E2V_UPLOAD_MB_PER_MIN", 1024.0),
        upload_requests_per_min=_int("E2V_UPLOAD_REQUESTS_PER_MIN", 600),
        min_free_mb=_float("E2V_MIN_FREE_MB", 100.0),
        url_fetch=env.get("E2V_URL_FETCH", "on").strip().lower() not in ("off", "0", "false", "no"),
        url_allow=tuple(x.strip() for x in env.get("E2V_URL_ALLOW", "").replace(";", ",").split(",") if x.strip()),
        url_timeout_s=_float("E2V_URL_TIMEOUT_S", 60.0),
        url_connect_timeout_s=_float("E2V_URL_CONNECT_TIMEOUT_S", 5.0),
        url_read_timeout_s=_float("E2V_URL_READ_TIMEOUT_S", 15.0),
        heads_dir=Path(env.get("E2V_HEADS_DIR", "").strip() or "heads"),
        asr_model=env.get("E2V_ASR_MODEL", "").strip() or "sensevoice_small",
        speaker_model=env.get("E2V_SPEAKER_MODEL", "").strip() or "campplus",
    )


def gradio_temp_dir(settings: Settings) -> Path:
    """Where Gradio keeps uploads and served copies: ``GRADIO_TEMP_DIR`` or ``<outputs>/.gradio-tmp``."""
    explicit = os.environ.get("GRADIO_TEMP_DIR", "").strip()
    return Path(explicit) if explicit else Path(settings.output_dir).resolve() / ".gradio-tmp"
