"""Response models of the runs, batches and stats routes (``serving/runs_api.py``), as OpenAPI shows them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunSummary(BaseModel):
    run_id: str = Field(description="'outputs_…', or '<batch id>~outputs_…' for a run of a batch")
    batch: str | None = Field(None, description="the batch folder the run belongs to (None: a single run)")
    timestamp: str | None = None
    emotion: str | None = None
    confidence: float | None = None
    granularity: str | None = None
    source_name: str | None = None
    duration_s: float | None = None
    url: str
    kind: str | None = Field(None, description="single | batch | live | stream")
    conversation: bool = Field(False, description="the run has speakers and turns")
    head: str | None = Field(None, description="a trained head's name, when one was applied")
    head_label: str | None = Field(None, description="that head's top label")
    speakers: list[str] = Field(default_factory=list, description="a conversation's speaker names")
    label: str | None = Field(None, description="the reference label a labelled batch gave this input")
    request_id: str | None = None


class RunsPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"runs": [], "total": 0, "limit": 20, "offset": 0,
                                                                "next_cursor": None, "indexing": False}]})  # fmt: skip
    runs: list[RunSummary]
    total: int = Field(description="runs matching the filters")
    limit: int
    offset: int
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last page")
    indexing: bool = Field(False, description="the catalog is being built from the folders: the listing may be short")


class BatchSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch_id: str
    created: str | None = None
    input: str | None = Field(None, description="what the batch was started on (a folder, glob, list or uploads)")
    state: str = Field(description="done (report.txt written) | running | stopped (interrupted; --resume continues)")
    runs: int | None = Field(None, description="run folders in the batch")
    inputs: int | None = Field(None, description="inputs with a summary row (ok or failed)")
    ok: int | None = None
    failed: int | None = None
    labelled: int | None = Field(None, description="inputs with a reference label")
    accuracy: float | None = None
    weighted_f1: float | None = None
    url: str


class BatchesPage(BaseModel):
    batches: list[BatchSummary]
    total: int
    next_cursor: str | None = None


class BatchDetail(BatchSummary):
    summary: dict = Field(description="runs, emotions (count per top emotion), mean_confidence, audio_s, conversations")
    metrics: dict | None = Field(None, description="metrics.json (labelled batches): accuracy, F1, per class …")
    confusion_matrix: dict | None = Field(None, description="{labels, matrix}: matrix[reference][predicted] counts")
    runs_url: str = Field(description="GET this for the batch's runs (cursor pages)")


class Deleted(BaseModel):
    deleted: str = Field(description="the run or batch id removed")
    runs: int = Field(description="how many runs went with it")


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")
    runs: int
    emotions: dict[str, int] = Field(description="top emotion → runs")
    by_day: list[dict] = Field(description="[{day, total, emotions}], newest day first")
    by_batch: list[dict] = Field(description="[{batch, total, emotions}], newest batch first")
    by_speaker: list[dict] = Field(description="[{speaker, total, emotions}] over conversation turns, by name")
