"""The REST API's request and response models (what ``/docs`` and ``/openapi.json`` publish)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emotion2vec_webui.options import (
    AUDIO_STREAM,
    GRANULARITY,
    MAX_MODEL_NAME,
    MIN_CONFIDENCE,
    NUM_SPEAKERS,
    SEGMENTATION,
    SPEAKERS,
)

# The option fields' enums and bounds come from options.py (the one definition); RecognizeOptions checks them again.
Granularity = Literal[GRANULARITY.values]  # type: ignore[valid-type]
Segmentation = Literal[SEGMENTATION.values]  # type: ignore[valid-type]
Speakers = Literal[SPEAKERS.values]  # type: ignore[valid-type]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code", examples=["audio_undecodable"])
    message: str = Field(description="what went wrong and how to fix it")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    uptime_s: float


class Readiness(BaseModel):
    ready: bool
    state: str = Field(description="loading, ready or unavailable", examples=["ready"])
    message: str
    model: dict[str, Any] | None = None
    queue_depth: int
    max_queue: int
    storage: dict[str, Any] | None = Field(
        None, description="the output folder: ok, code (storage_full / storage_unavailable), message, free_mb"
    )
    replicas: dict[str, Any] | None = Field(
        None, description="serve --ray only: the model replicas (running, states, min, max, status); null in one process"
    )


class RecognizeJson(BaseModel):
    """JSON body of ``POST /api/v1/recognize``: exactly one of ``audio_base64``, ``audio_path`` and ``audio_url``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"audio_base64": "UklGRiQAAABXQVZF…", "filename": "clip.wav"}]},
    )
    audio_base64: str | None = Field(None, description="the audio file's bytes, base64 (a data: URL prefix is ok)")
    filename: str | None = Field(None, description="name reported in result.json")
    audio_path: str | None = Field(None, description="a file inside E2V_INPUT_DIRS (refused when unset)")
    audio_url: str | None = Field(
        None,
        description="an http(s) URL the server downloads (E2V_URL_FETCH; private and loopback addresses only "
        "when E2V_URL_ALLOW lists them)",
    )
    channels: str | int = Field(
        "mix", description="mix (average all channels), left, right, or a channel index counted from 0"
    )
    audio_stream: int | None = Field(
        None, ge=AUDIO_STREAM.low, le=AUDIO_STREAM.high, description="the audio stream to decode, from 0 (default 0)"
    )
    granularity: Granularity = GRANULARITY.default
    extract_embedding: bool = True
    segmentation: Segmentation = Field(
        SEGMENTATION.default,
        description="'segments' from runs of frame emotions, or 'vad': one utterance per speech segment",
    )
    head: str | None = Field(None, description="a trained head (GET /api/v1/heads) applied beside the nine classes")
    speakers: Speakers = Field(
        SPEAKERS.default, description="conversation: none, channels (one speaker per channel) or auto (diarization)"
    )
    num_speakers: int | None = Field(
        None, ge=NUM_SPEAKERS.low, le=NUM_SPEAKERS.high, description="auto: the number of speakers, when known"
    )
    transcribe: bool = Field(False, description="conversation: each turn's text (ASR)")
    asr_model: str | None = Field(None, max_length=MAX_MODEL_NAME, description="ASR model name, hub id or directory")
    calibration: str | None = Field(None, max_length=64, description="a saved calibration (emotion2vec-webui "
                                    "calibrate): calibrated confidence; result.json's \"calibration\" names it")  # fmt: skip
    min_confidence: float | None = Field(
        None, ge=MIN_CONFIDENCE[0], le=MIN_CONFIDENCE[1],
        description="abstention: a result below this confidence is marked \"uncertain\" (its top emotion kept)",
    )  # fmt: skip


INPUT_FIELDS = ("audio_base64", "filename", "audio_path", "audio_url")  # the JSON body's input; the rest are options


def form_properties() -> dict:
    """The multipart form's option fields for OpenAPI: the JSON body's, as text fields take them (booleans as
    ``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off``; an empty field is the default)."""
    props = RecognizeJson.model_json_schema()["properties"]
    return {k: v for k, v in props.items() if k not in INPUT_FIELDS}


class RecognizeResponse(BaseModel):
    """The run's result.json, plus ``run_id`` and ``files`` (artifact URLs)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "emotion": "happy",
                    "emotion_zh": "开心",
                    "confidence": 0.853,
                    "scores": {"angry": 0.01, "happy": 0.853, "neutral": 0.1},
                    "granularity": "utterance",
                    "timestamp": "2026-11-24T13:05:09+08:00",
                    "request_id": "3f2a9c0d1b7e4a55",
                    "run_id": "outputs_20261124_130509",
                    "files": {"result.json": "http://127.0.0.1:7860/api/v1/runs/outputs_20261124_130509/result.json"},
                }
            ]
        },
    )
    emotion: str
    emotion_zh: str
    confidence: float
    scores: dict[str, float]
    granularity: str
    timestamp: str
    request_id: str | None = None
    audio: dict[str, Any]
    model: dict[str, Any]
    embedding: dict[str, Any] | None = None
    frames: dict[str, Any] | None = None
    segments: list[dict[str, Any]] | None = None
    warnings: list[str] = []
    processing_time_s: float
    run_id: str
    files: dict[str, str]


class SpeakerNames(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"names": {"left": "Agent", "right": "Customer"}}]})
    names: dict[str, str] = Field(
        max_length=256, description="speaker id → name (an empty name restores the id); ids not named keep theirs"
    )


class SimilarityResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"cosine": 0.93}]})
    cosine: float = Field(description="cosine similarity of the two utterance embeddings, -1…1 (≥ 0.9 is common)")
    scores_similarity: float | None = Field(
        None, description="1 − Jensen–Shannon divergence of the two nine-class score distributions, 0…1"
    )
    record: str | None = Field(None, description="the kept comparison: <outputs>/similarity/<record>.json")


