"""One batch orchestration for every face: the ``batch`` command and the Batch tab run the same steps.

:func:`prepare_batch` checks everything before any work and opens the batch
folder: the head (its labels, and against the engine when one is already
loaded), the reference labels, the outputs root (writable; temporary folders
that dead writers left are swept, there and in the batch folder), the batch
folder itself (new, or resumed only with the settings it was started with).
:meth:`PreparedBatch.run` then classifies what is left — on the local engine,
decoding ahead in guarded worker processes, or on Ray — appending a summary
row per input and calling ``on_row`` (each face's progress: the CLI's bar,
the page's progress), and ends with the summaries, the scores and report.txt.

A face that already holds the model passes ``execute`` (``execute(fn)`` runs
``fn(engine)``): the Batch tab runs its model calls through the service's
queue, taking turns with other users. Without it the batch loads its own
engine, once, and only when there is something to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.batch import (
    BatchOptions,
    BatchReport,
    RowCallback,
    classify_group,
    finish_batch,
    run_local,
)
from emotion2vec_webui.jobs.batch_folder import batch_manifest, latest_batch_dir, new_batch_dir, open_batch
from emotion2vec_webui.jobs.batch_scoring import check_labels, head_folder_labels
from emotion2vec_webui.jobs.inputs import BatchItem
from emotion2vec_webui.jobs.summary import BatchSummary
from emotion2vec_webui.label_sets import label_set

Execute = Callable[[Callable], object]  # execute(fn) runs fn(engine) where the model lives and returns its value
ENGINES = ("local", "ray")


def batch_head_labels(settings: Settings, head: str | None) -> tuple[str, ...]:
    """The label set of the head a batch applies (empty without one), read before any work.

    Raises:
        E2VError: ``not_found`` or ``head_invalid``.
    """
    if not head:
        return ()
    from emotion2vec_webui.runs.stores.head_store import load_head

    return tuple(load_head(settings.heads_dir, head).labels)


@dataclass
class PreparedBatch:
    """A batch folder opened and checked, with the inputs still to do (:func:`prepare_batch`)."""

    items: list[BatchItem]  # every input, in input order (labels as scored)
    todo: list[BatchItem]  # those not done yet
    summary: BatchSummary  # the batch folder's summary files
    settings: Settings  # output_dir = the batch folder (absolute: Ray workers write there too)
    options: BatchOptions
    head_labels: tuple[str, ...]  # the head's label set (empty without a head)
    engine: str = "local"  # "local" or "ray"
    execute: Execute | None = None  # model calls run through this (None: the batch loads its own engine)

    @property
    def folder(self) -> Path:
        return self.summary.folder

    @property
    def skipped(self) -> int:
        """Inputs already done before this session (resume)."""
        return len(self.items) - len(self.todo)

    def run(self, on_row: RowCallback | None = None) -> BatchReport:
        """Classify the inputs still to do, then write the summaries, the scores and report.txt.

        Args:
            on_row: called with each summary row as it is recorded (ok or failed).

        Returns:
            The batch's :class:`batch.BatchReport`.
        """
        t0 = time.perf_counter()
        audio_s = 0.0
        try:
            if self.todo and self.engine == "ray":
                from emotion2vec_webui.jobs.ray_batch import run_ray

                audio_s = run_ray(self.todo, self.summary, self.settings, self.options, on_row)
            elif self.todo:
                execute = self.load_engine()
                settings, options = self.settings, self.options

                def run_group(pairs: list) -> list:
                    return execute(lambda engine: classify_group(engine, pairs, settings, options))

                audio_s = run_local(self.todo, self.summary, settings, options, run_group, on_row)
        finally:
            self.summary.close()
        elapsed = time.perf_counter() - t0
        return finish_batch(self.summary, self.items, self.options, self.skipped, audio_s, elapsed, self.head_labels)

    def load_engine(self) -> Execute:
        """The way model calls run: ``execute`` as given, else an engine loaded here once (the CLI calls this
        before drawing its progress bar), with the head checked against it (``head_mismatch``) before any input.
        """
        if self.execute is None:
            from emotion2vec_webui.engine.engine import EmotionEngine

            engine = EmotionEngine.from_settings(self.settings)
            if self.options.head:
                from emotion2vec_webui.runs.stores.head_store import load_for_engine

                load_for_engine(self.settings.heads_dir, self.options.head, engine)
            self.execute = lambda fn: fn(engine)
        return self.execute


def prepare_batch(
    items: Sequence[BatchItem],
    settings: Settings,
    options: BatchOptions,
    input_spec: str,
    *,
    batch_dir: str | Path | None = None,
    resume: bool = False,
    engine: str = "local",
    execute: Execute | None = None,
    manifest_extra: dict | None = None,
) -> PreparedBatch:
    """Check a batch before any work and open its folder.

    In order: the head (``not_found``, ``head_invalid``; ``head_mismatch`` too when ``execute`` reaches a loaded
    engine), the reference labels (each a nine-class or head label: :func:`batch_scoring.check_labels`; a folder
    named after a head label labels its files), the batch folder's place (``storage_unavailable`` /
    ``storage_full`` when it cannot be written; stale temporary folders swept), then the folder itself: a new
    one, or with ``resume`` the one given (or the newest on this INPUT) continued only with the model,
    precision, granularity and head it was started with.

    Args:
        items: the inputs (:func:`inputs.discover_inputs`, or the page's uploads).
        settings: the model, outputs root (``output_dir``) and heads folder.
        options: what each input gets.
        input_spec: the INPUT as given (recorded in batch.json; a folder gives folder-per-label head labels).
        batch_dir: the batch folder to write or resume (default: a new ``batch_…`` under the outputs root).
        resume: continue the batch folder, skipping inputs already done.
        engine: ``local`` or ``ray``.
        execute: run model calls through this (``execute(fn)`` → ``fn(engine)``); None: load an engine on run.
        manifest_extra: more fields for batch.json (e.g. ``{"ui": True}``).

    Raises:
        E2VError: any of the above, before anything is classified.
    """
    from emotion2vec_webui.runs.storage import require_output_dir, sweep_stale_temps

    if engine not in ENGINES:
        raise E2VError("bad_request", f"--engine must be one of {', '.join(ENGINES)}. / --engine 只能是 local 或 ray。")
    head_labels = batch_head_labels(settings, options.head)
    if options.head and execute is not None and engine == "local":
        from emotion2vec_webui.runs.stores.head_store import load_for_engine

        execute(lambda model: load_for_engine(settings.heads_dir, options.head, model))
    items = head_folder_labels(list(items), input_spec, head_labels)
    if label_set(options.label_set) is None:  # with a label set, labels outside it are dropped and counted
        check_labels(items, options.label_map, head_labels)
    root = Path(settings.output_dir)
    folder = Path(batch_dir) if batch_dir else (latest_batch_dir(root, input_spec) if resume else None)
    folder = (folder or new_batch_dir(root)).absolute()
    require_output_dir(folder)  # unwritable or not a folder: one plain line, before any work
    for where, path in (("outputs", root), ("batch", folder)):
        sweep_stale_temps(path, where)  # temp run folders of writers that died (a kill mid-write)
    manifest = batch_manifest(
        input_spec,
        settings,
        granularity=options.granularity,
        head=options.head,
        embedding=options.extract_embedding,
        calibration=options.recognize.calibration,  # calibrated confidences and abstention: not mixed on --resume
        min_confidence=options.recognize.min_confidence,
        **(manifest_extra or {}),
    )
    summary, todo = open_batch(items, folder, resume, manifest)
    batch_settings = replace(settings, output_dir=summary.folder)
    return PreparedBatch(items, todo, summary, batch_settings, options, head_labels, engine, execute)
