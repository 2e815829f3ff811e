"""One small error hierarchy with the stable codes of docs/errors.md.

Adapters (REST, CLI, UI) map ``code`` to an HTTP status, an exit code or a
message in one table each; nothing else in the package inspects messages.
"""

from __future__ import annotations

# Every code a user or a script can see, with a one-line meaning.
ERROR_CODES: dict[str, str] = {
    "file_too_large": "the upload is larger than E2V_MAX_UPLOAD_MB",
    "audio_too_long": "the audio is longer than E2V_MAX_DURATION_S, or has more input samples than that of 48 kHz stereo",
    "audio_too_short": "the audio is shorter than E2V_MIN_DURATION_S",
    "audio_empty": "the file holds no audio samples",
    "audio_undecodable": "the file is not audio or is corrupt beyond recovery",
    "audio_nonfinite": "the audio holds NaN or infinite samples",
    "audio_too_large_decoded": "decoding needs more memory or time than a decode worker may use",
    "audio_no_stream": "the file has no audio stream (a silent video), or not the stream or channel asked for",
    "url_forbidden": "the audio_url is not http(s), URL fetching is off, or it points at a forbidden address",
    "url_unreachable": "the audio_url could not be downloaded (DNS, connection, HTTP status, redirects)",
    "url_timeout": "the audio_url did not answer or finish downloading in time (E2V_URL_TIMEOUT_S)",
    "bad_request": "the request is malformed",
    "forbidden": "the path lies outside the allowed input folders",
    "not_found": "no such run or artifact",
    "unauthorized": "a valid API token is required",
    "model_unavailable": "the model could not be loaded",
    "overloaded": "the server queue is full, or no decoder was free in time (E2V_DECODE_WAIT_S); retry later",
    "request_timeout": "the request body arrived too slowly or stalled (E2V_BODY_TIMEOUT_S)",
    "rate_limited": "too many uploads, wrong tokens and logins, or requests at once from this client; retry later",
    "method_not_allowed": "the path exists but not with this HTTP method",
    "storage_full": "the output folder's disk is full (or over quota)",
    "storage_unavailable": "the output folder cannot be created or written",
    "internal_error": "an unexpected error; see the server log",
    "head_mismatch": "the trained head (or calibration) was built on another backbone or head version",
    "head_invalid": "the trained head's (or calibration's) folder is malformed (its files, types, shapes or values)",
    "run_busy": "the run or batch is being written or read right now, so it was not deleted; retry shortly",
    "range_not_satisfiable": "the byte range asked for (Range) starts past the end of the file",
}


class E2VError(Exception):
    """An error a person can act on, with a stable machine-readable code.

    Args:
        code: one of ``ERROR_CODES``.
        message: what went wrong and, where possible, how to fix it.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class AudioError(E2VError):
    """The input audio cannot be used (decoding, limits, content)."""


class ModelUnavailableError(E2VError):
    """The model could not be resolved or loaded."""

    def __init__(self, message: str) -> None:
        super().__init__("model_unavailable", message)


class OverloadedError(E2VError):
    """The bounded inference queue is full."""

    def __init__(self, message: str = "The server is busy: the queue is full. Retry shortly.") -> None:
        super().__init__("overloaded", message)


class HeadMismatchError(E2VError):
    """A trained head (``heads/<name>``) was trained on another model than the one loaded."""

    def __init__(self, message: str) -> None:
        super().__init__("head_mismatch", message)


class StorageError(E2VError):
    """The output folder cannot take a run: ``storage_full`` or ``storage_unavailable``."""
