"""Head training as a background job with progress, for the server's faces (REST ``POST /api/v1/heads``, the Train tab).

One job at a time per server (training competes with recognition for the CPU;
feature extraction goes through the service's inference queue one clip at a
time, so recognition requests interleave with it). Jobs are kept in memory:
the head folder is what lasts.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.head_features import Backbone
from emotion2vec_webui.jobs.train_head import TrainOptions, labelled_items, summary_json, train_head
from emotion2vec_webui.runs.shown_paths import shown_paths

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    id: str
    name: str
    data: str
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    message: str = ""
    report: dict | None = None
    error: dict | None = None  # {"code", "message"}
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cleanup: str | None = None  # an unpacked upload the job owns: removed when it ends

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "report": self.report,
            "error": self.error,
            "log": list(self.log),
        }


class TrainJobs:
    """Start head-training jobs on a :class:`runs.service.Service` and look them up by id."""

    def __init__(self, service) -> None:
        self.service = service
        self._jobs: dict[str, TrainJob] = {}
        self._lock = threading.Lock()

    def start(
        self, data: str, name: str, options: TrainOptions = TrainOptions(), cleanup: str | None = None
    ) -> TrainJob:
        """Start training ``name`` on ``data`` (a server path the caller has already checked).

        Args:
            cleanup: a folder the job owns (an unpacked upload), removed when the job ends,
                or at once when it cannot start.

        Raises:
            E2VError: ``overloaded`` when a job is already running; ``model_unavailable``.
        """
        try:
            _ = self.service.engine  # fail fast when the model is not ready
            with self._lock:
                if any(j.state in ("queued", "running") for j in self._jobs.values()):
                    raise E2VError(
                        "overloaded",
                        "A head is already being trained; wait for it to finish. / 已有训练任务在进行,请稍候。",
                    )
                job = TrainJob(uuid.uuid4().hex[:12], name, data, cleanup=cleanup)
                self._jobs[job.id] = job
        except BaseException:
            if cleanup:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise
        threading.Thread(target=self._run, args=(job, options), name=f"e2v-train-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> TrainJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise E2VError("not_found", f"No training job {job_id!r}. / 没有该训练任务。")
        return job

    def _run(self, job: TrainJob, options: TrainOptions) -> None:
        job.state = "running"

        def progress(fraction: float, message: str) -> None:
            job.progress, job.message = fraction, message
            if not message.startswith("features "):
                job.log.append(message)

        state = "failed"  # set on the job last, after its upload is gone: a waiter sees the end state only then
        try:
            backbone = Backbone.of_engine(self.service.engine)
            # feature extraction queues behind interactive work (background priority, this job's own share)
            with self.service.job_engine("background", f"train:{job.id}") as queued:
                outcome = train_head(
                    job.data, job.name, backbone, lambda fn: fn(queued), self.service.settings, options, progress
                )
            job.report = summary_json(outcome.report)
            job.log = list(outcome.log_lines)
            job.progress, state = 1.0, "done"
        except E2VError as exc:
            # REST and the Train tab show it: files relative to the folders a client knows (runs/shown_paths.py)
            job.error = {"code": exc.code, "message": shown_paths(exc.message, self.service.settings)}
        except Exception as exc:  # reported on the job, never kills the server
            log.exception("training job %s failed", job.id)
            reason = shown_paths(f"{type(exc).__name__}: {str(exc)[:300]}", self.service.settings)
            job.error = {
                "code": "internal_error",
                "message": f"{reason} (see the server log) / 训练意外失败，详见服务器日志。",
            }
        finally:
            if job.cleanup:
                shutil.rmtree(job.cleanup, ignore_errors=True)
            job.finished = time.time()
            job.state = state

    def wait(self, job_id: str, timeout_s: float = 600.0) -> TrainJob:
        """Block until the job ends (tests; the UI polls)."""
        deadline = time.monotonic() + timeout_s
        job = self.get(job_id)
        while job.state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
        return job


_registries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def jobs_for(service) -> TrainJobs:
    """The one job registry of a service: REST and the Train tab share it (one training at a time)."""
    with _registries_lock:
        jobs = _registries.get(service)
        if jobs is None:
            jobs = _registries[service] = TrainJobs(service)
        return jobs


def check_inside(items, input_dirs) -> None:
    """Every file of a labelled set lies inside ``E2V_INPUT_DIRS`` (a CSV may name any path).

    Raises:
        E2VError: ``forbidden`` naming the first file outside.
    """
    roots = [Path(d).expanduser().resolve() for d in input_dirs]
    for it in items:
        path = Path(it.file).resolve()
        if not any(path.is_relative_to(r) for r in roots):
            raise E2VError(  # named, not placed: where it is on the server is not the client's business
                "forbidden",
                f"A listed file ({path.name}) is outside the allowed input folders (E2V_INPUT_DIRS). "
                f"/ 列出的文件（{path.name}）不在允许的输入文件夹内。",
            )


def resolve_training_data(raw: str, input_dirs) -> tuple[Path, list]:
    """A client-named labelled set (folder, or a CSV/TSV list) inside ``E2V_INPUT_DIRS``, and its items.

    The folder or list goes through the one input-folder policy (``runs/inputs/input_files.py``: no ``..``, no
    symlinks out); every file the set names must lie inside the input folders too.

    Raises:
        E2VError: ``forbidden``, ``not_found`` or ``bad_request`` (no labels).
    """
    import os

    from emotion2vec_webui.runs.inputs.input_files import open_input_file, resolve_input_folder

    text = (raw or "").strip()
    if Path(text).suffix.lower() in (".csv", ".tsv"):
        fd, data = open_input_file(text, input_dirs)
        os.close(fd)
    else:
        data = resolve_input_folder(text, input_dirs)
    items = labelled_items(data)
    check_inside(items, input_dirs)
    return data, items
