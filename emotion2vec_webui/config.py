"""Settings read from ``E2V_*`` environment variables, in one frozen dataclass.

Every adapter calls :func:`load_settings` once; command-line flags override
fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
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


def _optional_float(name: str, minimum: float) -> float | None:
    """A number of at least ``minimum``, or None when the variable is unset or ``auto``."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "auto"):
        return None
    return max(minimum, _float(name, minimum))


@dataclass(frozen=True)
class Settings:
    model: str = "emotion2vec_plus_large"  # name (docs/README.md) or local directory
    hub: str = "ms"  # "ms" (ModelScope) or "hf" (Hugging Face)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # options.PRECISION (E2V_PRECISION; engine/precision.py resolves auto)
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
    url_min_rate_kb: float = 8.0  # E2V_URL_MIN_RATE_KB: KB/s a download must average once url_read_timeout_s passed
    url_max_concurrent: int = 8  # E2V_URL_MAX_CONCURRENT: server-side audio_url downloads at once (503 beyond; 0: any)
    url_max_per_client: int = 2  # E2V_URL_MAX_PER_CLIENT: one client's downloads at once (429 beyond; 0: any)
    max_per_client: int | None = None  # E2V_MAX_PER_CLIENT: a client's recognitions in flight (see client_slots)
    stream_idle_s: float = 10.0  # E2V_STREAM_IDLE_S: a live stream (/api/v1/stream) silent this long is ended
    stream_max_speed: float = 1.0  # E2V_STREAM_MAX_SPEED: audio seconds a stream may send per second (0: any)
    stream_buffer_s: float = 10.0  # E2V_STREAM_BUFFER_S: how far ahead of that pace a stream may run, then 429
    decode_workers: int = 2  # E2V_DECODE_WORKERS: decode processes (0: decode in the calling process, unguarded)
    decode_timeout_s: float = 120.0  # E2V_DECODE_TIMEOUT_S: wall-clock limit per file, then the worker is killed
    decode_memory_mb: float = 0.0  # E2V_DECODE_MEMORY_MB: address space a decode may add to an idle worker (0: per file)
    decode_wait_s: float = 5.0  # E2V_DECODE_WAIT_S: the longest wait for a free decoder, then 503 overloaded
    # E2V_BATCH_WAIT_MS: a request's wait for batch companions, ms. None (unset, `auto`): per device — a CPU in fp32
    # waits for none and batches what is already queued (close lengths), CUDA waits 5 ms, CPU int8/bf16 one at a time;
    # 0: one request at a time (as before batching); more: that wait. See runs/inference/scheduler.py's batch_policy.
    batch_wait_ms: float | None = None
    batch_max_audio_s: float | None = None  # E2V_BATCH_MAX_AUDIO_S: padded audio per batched call (None: per device)
    heads_dir: Path = Path("heads")  # trained classifier heads, one folder each (E2V_HEADS_DIR)
    asr_model: str = "sensevoice_small"  # conversations' ASR: name, hub id or directory (E2V_ASR_MODEL)
    speaker_model: str = "campplus"  # conversations' speaker model (CAM++): name, hub id or directory (E2V_SPEAKER_MODEL)
    keep_days: float = 0.0  # E2V_KEEP_DAYS: serve removes runs (whole batches) older than this many days (0: off)
    keep_runs: int = 0  # E2V_KEEP_RUNS: serve keeps the newest runs up to this many, removes the rest (0: off)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def client_slots(self) -> int:
        """Recognitions one client may have in flight: E2V_MAX_PER_CLIENT, else a quarter of max_queue (0: no cap)."""
        if self.max_per_client is not None:
            return max(0, self.max_per_client)
        return max(1, self.max_queue // 4)


def load_settings() -> Settings:
    """Read settings from the environment (``E2V_*``), defaults per docs/settings.md."""
    env = os.environ
    dirs = tuple(Path(p).expanduser() for p in env.get("E2V_INPUT_DIRS", "").split(os.pathsep) if p.strip())
    hub = env_hub()
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
        url_allow=_url_allow(env.get("E2V_URL_ALLOW", "")),
        url_timeout_s=_float("E2V_URL_TIMEOUT_S", 60.0),
        url_connect_timeout_s=_float("E2V_URL_CONNECT_TIMEOUT_S", 5.0),
        url_read_timeout_s=_float("E2V_URL_READ_TIMEOUT_S", 15.0),
        url_min_rate_kb=_float("E2V_URL_MIN_RATE_KB", 8.0),
        url_max_concurrent=_int("E2V_URL_MAX_CONCURRENT", 8),
        url_max_per_client=_int("E2V_URL_MAX_PER_CLIENT", 2),
        max_per_client=_int("E2V_MAX_PER_CLIENT", 0) if env.get("E2V_MAX_PER_CLIENT", "").strip() else None,
        stream_idle_s=max(1.0, _float("E2V_STREAM_IDLE_S", 10.0)),
        stream_max_speed=max(0.0, _float("E2V_STREAM_MAX_SPEED", 1.0)),
        stream_buffer_s=max(1.0, _float("E2V_STREAM_BUFFER_S", 10.0)),
        decode_workers=max(0, _int("E2V_DECODE_WORKERS", 2)),
        decode_timeout_s=max(0.1, _float("E2V_DECODE_TIMEOUT_S", 120.0)),
        decode_memory_mb=max(0.0, _float("E2V_DECODE_MEMORY_MB", 0.0)),
        decode_wait_s=max(0.0, _float("E2V_DECODE_WAIT_S", 5.0)),
        batch_wait_ms=_optional_float("E2V_BATCH_WAIT_MS", 0.0),
        batch_max_audio_s=_optional_float("E2V_BATCH_MAX_AUDIO_S", 1.0),
        heads_dir=Path(env.get("E2V_HEADS_DIR", "").strip() or "heads"),
        asr_model=env.get("E2V_ASR_MODEL", "").strip() or "sensevoice_small",
        speaker_model=env.get("E2V_SPEAKER_MODEL", "").strip() or "campplus",
        keep_days=max(0.0, _float("E2V_KEEP_DAYS", 0.0)),
        keep_runs=max(0, _int("E2V_KEEP_RUNS", 0)),
    )


def gradio_temp_dir(settings: Settings) -> Path:
    """Where Gradio keeps uploads and served copies: ``GRADIO_TEMP_DIR`` or ``<outputs>/.gradio-tmp``."""
    explicit = os.environ.get("GRADIO_TEMP_DIR", "").strip()
    return Path(explicit) if explicit else Path(settings.output_dir).resolve() / ".gradio-tmp"


# -- E2V_URL_ALLOW's grammar (docs/settings.md); runs/inputs/url_fetch.py matches the parsed entries -------------------


@dataclass(frozen=True)
class AllowEntry:
    """One ``E2V_URL_ALLOW`` entry."""

    kind: str  # "net": an IP address or CIDR; "name": one DNS name; "suffix": the DNS names under ``target``
    target: str  # the network ("127.0.0.1/32") or the lower-case ASCII name, without a trailing dot
    port: int | None = None  # only this port (None: any port but the server's own)


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")  # how IPv4 spellings end (127.1, 0x7f.1, 2130706433)


def is_address_spelling(host: str) -> bool:
    """Whether ``host`` is an IP address, however spelled (a name's last label is never a number)."""
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))


def parse_allow_entry(text: str) -> AllowEntry:
    """Parse one entry: ``name``, ``*.suffix``, an IP or CIDR, each with an optional ``:port`` (IPv6: ``[::1]:80``).

    Raises:
        ValueError: the entry is malformed (a one-line "English / 中文" message naming it).
    """
    raw = text.strip()
    entry = raw.lower()

    def bad(english: str, chinese: str) -> ValueError:
        return ValueError(f"E2V_URL_ALLOW entry {raw!r}: {english}. / E2V_URL_ALLOW 的条目 {raw!r} 无效：{chinese}。")

    if "://" in entry:
        raise bad("write a host, not a URL", "请写主机名，而不是 URL")
    bracketed, port_text = entry.startswith("["), None
    if bracketed:
        host, close, rest = entry[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise bad("write an IPv6 address as [address] or [address]:port", "IPv6 地址请写成 [地址] 或 [地址]:端口")
        port_text = rest[1:] if rest else None
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host = entry
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise bad("the port must be a number from 1 to 65535", "端口必须是 1 到 65535 之间的数字")
        port = int(port_text)
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError:
        net = None
    if net is not None and (not bracketed or net.version == 6):
        return AllowEntry("net", str(net), port)
    if bracketed or ":" in host or "/" in host:
        raise bad("not a valid IP address or network (CIDR)", "不是有效的 IP 地址或网段（CIDR）")
    kind = "suffix" if host.startswith("*.") else "name"
    host = host[2:] if kind == "suffix" else host
    try:
        name = host.rstrip(".").encode("idna").decode("ascii") if not host.isascii() else host.rstrip(".")
    except UnicodeError:
        name = ""
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise bad("expected a host name, *.suffix, an IP address or a CIDR, each with an optional :port",
                  "应为主机名、*.后缀、IP 地址或 CIDR，可加 :端口")  # fmt: skip
    if is_address_spelling(name):
        raise bad("an address written as a name: write it as an IP address or CIDR (e.g. 127.0.0.0/8); "
                  "names and *.suffix match DNS names only",
                  "这是写成名字的地址，请写成 IP 地址或 CIDR（如 127.0.0.0/8）；主机名和 *.后缀只匹配域名")  # fmt: skip
    return AllowEntry(kind, name, port)


def _url_allow(raw: str) -> tuple[str, ...]:
    """E2V_URL_ALLOW's entries (comma- or semicolon-separated); a malformed one stops the start with one line."""
    entries = tuple(x.strip() for x in raw.replace(";", ",").split(",") if x.strip())
    for entry in entries:
        try:
            parse_allow_entry(entry)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    return entries


# -- variables read at the point of use (not by load_settings), still read here only ----------------------------
_TRUTHY = ("1", "true", "yes", "on")


def onnx_cache_dir() -> Path:
    """``E2V_ONNX_CACHE``: where the ``onnx``/``onnx-int8`` precision keeps its exported feature graphs."""
    return Path(os.environ.get("E2V_ONNX_CACHE") or Path.home() / ".cache" / "emotion2vec-webui" / "onnx")


def bench_cache_dir() -> Path:
    """``E2V_BENCH_CACHE``: where ``bench`` keeps its offline Hugging Face stand-ins (``hf-random:…``)."""
    return Path(os.environ.get("E2V_BENCH_CACHE") or Path.home() / ".cache" / "emotion2vec-webui" / "hf-random")


def hub_offline(hub: str) -> bool:
    """Offline mode for ``hub``: ``HF_HUB_OFFLINE`` for hf; ``MODELSCOPE_OFFLINE``, else ``E2V_OFFLINE``, for ms."""
    if hub == "hf":
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUTHY
    return os.environ.get("MODELSCOPE_OFFLINE", os.environ.get("E2V_OFFLINE", "")).lower() in _TRUTHY


def env_hub() -> str:
    """``E2V_HUB`` as ``load_settings`` reads it (``ms`` when unset), for messages that name the other hub."""
    return os.environ.get("E2V_HUB", "ms").strip().lower() or "ms"
