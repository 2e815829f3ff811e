"""``batch --engine ray``: the same batch on Ray Data, from one machine to a cluster.

The dataset is the list of inputs. A ``map`` stage of light tasks decodes
each input the way the local engine does (:func:`decode_row`: its recognise
flow's decode, in the guarded decoder pool, each channel apart for
``--speakers channels``, URLs through the same fetcher), and a
``map_batches`` stage runs :class:`ClassifyActor`, a callable class that
loads the engine once per actor and finishes each flow with the same
:func:`batch.classify_group` as the local engine, writing run folders into
the batch folder. Ray's streaming executor overlaps the two stages, so the
actors do not wait on decoding. The driver (this process) appends each
returned summary row as it arrives, so a kill loses nothing finished and
``--resume`` works as with the local engine.

On a cluster (``RAY_ADDRESS`` set) the inputs and the batch folder must be on
storage every node sees at the same path (NFS, a mounted bucket); see
docs/batch.md. Without ``RAY_ADDRESS`` a local Ray instance is started and
shut down again. Ray is optional: it is imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.inputs import BatchItem, item_source
from emotion2vec_webui.jobs.summary import BatchSummary, error_row, item_request_id, ok_row

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'emotion2vec-webui[ray]'  (or: pip install -r requirements-ray.txt)"
_OBJECT_STORE_CAP = 1 << 30  # a local instance needs little: decoded clips are small and streamed


def import_ray():
    """Import Ray, or fail with the install line.

    Raises:
        E2VError: ``bad_request`` when Ray Data is not installed.
    """
    if not os.environ.get("RAY_ADDRESS"):
        # Our own instance listens on loopback only: skip Ray's token auth (on by default in recent Ray,
        # with a warning). A cluster keeps whatever auth its operators set up.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise E2VError("bad_request", f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}") from exc
    return ray


def start_ray(workers: int) -> bool:
    """Connect to ``RAY_ADDRESS`` when set, else start a local instance.

    Returns:
        True when this call started Ray (the caller shuts it down).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        return True
    cpus = max(os.cpu_count() or 1, workers + 1)  # one logical CPU beyond the actors, for the decode tasks
    try:
        import psutil

        store = min(_OBJECT_STORE_CAP, int(psutil.virtual_memory().available * 0.2))
    except ImportError:
        store = _OBJECT_STORE_CAP
    log.info("starting a local Ray instance (%d CPUs, %d MiB object store)", cpus, store >> 20)
    ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=max(store, 80 << 20), log_to_driver=True)
    return True


def decode_row(row: dict, settings: Settings, options) -> dict:
    """Ray ``map`` stage: one input decoded exactly as the local engine decodes it, or its error.

    The input's recognise flow (:class:`recognize.Recognition`) starts here with its decode: in the guarded
    decoder pool of this worker process (``audio/decoder_pool.py``: a file that crashes the decoder is this
    input's error), each channel decoded on its own for ``speakers=channels``, a URL downloaded by the same
    fetcher under the same rules (``runs/inputs/url_fetch.py``; ``audio.source_url`` kept). The decoded audio and the
    flow go to the actor together (pickled: Ray's own wire format), so run.log and ``processing_time_s`` cover
    the decode as with the local engine.

    Args:
        row: ``file``, ``label``, ``name`` of a :class:`inputs.BatchItem`.
        settings: settings whose ``output_dir`` is the batch folder.
        options: a :class:`batch.BatchOptions`.
    """
    from emotion2vec_webui.jobs.batch import recognize_options
    from emotion2vec_webui.runs.recognize import Recognition

    item = _item(row)
    out = {"file": row["file"], "label": row["label"], "name": row["name"], "flow": b"", "error": ""}
    rid = item_request_id(Path(settings.output_dir).name, item.file)
    flow = Recognition(settings, recognize_options(options), request_id=rid, count_wait=False)
    try:
        decoded = flow.decode(*item_source(item))  # pool None: this process's guarded decoder pool
    except E2VError as exc:
        out["error"] = json.dumps({"code": exc.code, "message": exc.message})
        return out
    except Exception as exc:  # a decoder crash is this input's problem only
        out["error"] = json.dumps({"code": "audio_undecodable", "message": f"{type(exc).__name__}: {exc}"})
        return out
    out["flow"] = pickle.dumps((decoded, flow), protocol=pickle.HIGHEST_PROTOCOL)
    return out


def _item(row: dict) -> BatchItem:
    return BatchItem(str(row["file"]), str(row["label"]) or None, str(row["name"]) or None)


class ClassifyActor:
    """Ray ``map_batches`` stage: loads the engine once, then classifies batches of decoded rows.

    Args:
        settings: settings whose ``output_dir`` is the batch folder (shared storage on a cluster).
        options: a :class:`batch.BatchOptions`.
    """

    def __init__(self, settings: Settings, options) -> None:
        from emotion2vec_webui.engine.engine import EmotionEngine
        from emotion2vec_webui.model.resolve import quiet_funasr

        logging.getLogger("emotion2vec_webui.runs.recognize").setLevel(logging.WARNING)  # details are in each run.log
        self.settings = settings
        self.options = options
        with quiet_funasr():
            self.engine = EmotionEngine.from_settings(settings)

    def __call__(self, batch: dict) -> dict:
        from emotion2vec_webui.jobs.batch import classify_group

        rows: list[dict | None] = []
        triples, slots = [], []
        for i, (file, label, name, flow, error) in enumerate(
            zip(batch["file"], batch["label"], batch["name"], batch["flow"], batch["error"], strict=True)
        ):
            item = _item({"file": file, "label": label, "name": name})
            if error:
                e = json.loads(error)
                rows.append(error_row(item, e["code"], e["message"]))
                continue
            decoded, began = pickle.loads(flow)  # written by decode_row in this same job
            rows.append(None)
            triples.append((item, decoded, began))
            slots.append(i)
        answers = classify_group(self.engine, triples, self.settings, self.options)
        for i, (item, _, _), answer in zip(slots, triples, answers, strict=True):
            if isinstance(answer, E2VError):
                rows[i] = error_row(item, answer.code, answer.message)
            else:
                rows[i] = ok_row(item, answer.result, answer.run.run_id)
        return {"row": np.array([json.dumps(r, ensure_ascii=False) for r in rows], dtype=object)}


def run_ray(todo: list[BatchItem], summary: BatchSummary, settings: Settings, options, on_row=None) -> float:
    """Run the batch on Ray Data; append each row to ``summary`` as it arrives.

    Args:
        todo: inputs still to do.
        summary: the batch folder's summary (the driver is its only writer).
        settings: settings whose ``output_dir`` is the batch folder.
        options: a :class:`batch.BatchOptions` (``workers`` = actors, ``batch_size`` = rows per call).
        on_row: called with each row after it is recorded.

    Returns:
        Seconds of audio classified.
    """
    ray = import_ray()
    started = start_ray(options.workers)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI draws its own bar
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and not settings.device.startswith("cpu") else 0
        ds = ray.data.from_items(
            [{"file": it.file, "label": it.label or "", "name": it.name or ""} for it in todo],
            override_num_blocks=max(1, min(len(todo), 8 * options.workers)),
        )
        ds = ds.map(decode_row, fn_kwargs={"settings": settings, "options": options}, num_cpus=0.25)
        ds = ds.map_batches(
            ClassifyActor,
            fn_constructor_kwargs={"settings": settings, "options": options},
            batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_gpus=gpus,
            num_cpus=1,
        )
        audio_s = 0.0
        for record in ds.iter_rows():
            row = json.loads(record["row"])
            summary.append(row)
            if row["status"] == "ok":
                audio_s += row["duration_s"] or 0.0
            if on_row:
                on_row(row)
        return audio_s
    finally:
        if started:
            ray.shutdown()  # a local instance stops; a cluster is only disconnected from
