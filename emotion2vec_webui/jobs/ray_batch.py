"""``batch --engine ray``: the same batch on Ray Data, from one machine to a cluster.

The dataset is the list of inputs. A ``map`` stage of light tasks decodes
each file (our own :func:`audio.decode_audio`, with the same limits), and a
``map_batches`` stage runs :class:`ClassifyActor`, a callable class that
loads the engine once per actor and classifies with the same
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

import numpy as np

from emotion2vec_webui.audio.decode import AudioLimits, DecodedAudio
from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.inputs import BatchItem
from emotion2vec_webui.jobs.summary import BatchSummary, error_row, ok_row

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


def decode_row(row: dict, limits: AudioLimits, decode_options=None, fetch_policy=None) -> dict:
    """Ray ``map`` stage: one input's path or URL → its decoded samples and metadata, or its error."""
    from pathlib import Path

    from emotion2vec_webui.audio.decode import decode_audio
    from emotion2vec_webui.runs.url_fetch import fetch_url, is_url

    out = {"file": row["file"], "label": row["label"], "pcm": b"", "meta": "", "error": ""}
    try:
        source, name = row["file"], Path(row["file"]).name
        if is_url(source) and fetch_policy is not None:
            fetched = fetch_url(source, fetch_policy)
            source, name = fetched.data, fetched.name
        d = decode_audio(source, source_name=name, limits=limits, options=decode_options)
    except E2VError as exc:
        out["error"] = json.dumps({"code": exc.code, "message": exc.message})
        return out
    except Exception as exc:  # a decoder crash is this input's problem only
        out["error"] = json.dumps({"code": "audio_undecodable", "message": f"{type(exc).__name__}: {exc}"})
        return out
    out["pcm"] = np.ascontiguousarray(d.waveform, dtype=np.float32).tobytes()
    out["meta"] = json.dumps(
        {
            "sample_rate": d.sample_rate,
            "original_sample_rate": d.original_sample_rate,
            "original_channels": d.original_channels,
            "source_name": d.source_name,
            "container": d.container,
            "warnings": list(d.warnings),
            "decode_s": d.decode_s,
            "resample_s": d.resample_s,
            "channels": d.channels,
            "channel_index": d.channel_index,
            "audio_stream": d.audio_stream,
        }
    )
    return out


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
        pairs, slots = [], []
        for i, (file, label, pcm, meta, error) in enumerate(
            zip(batch["file"], batch["label"], batch["pcm"], batch["meta"], batch["error"], strict=True)
        ):
            item = BatchItem(str(file), str(label) or None)
            if error:
                e = json.loads(error)
                rows.append(error_row(item, e["code"], e["message"]))
                continue
            m = json.loads(meta)
            m["warnings"] = tuple(m["warnings"])
            decoded = DecodedAudio(waveform=np.frombuffer(pcm, dtype=np.float32).copy(), **m)
            rows.append(None)
            pairs.append((item, decoded))
            slots.append(i)
        for i, (item, _), answer in zip(
            slots, pairs, classify_group(self.engine, pairs, self.settings, self.options), strict=True
        ):
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
            [{"file": it.file, "label": it.label or ""} for it in todo],
            override_num_blocks=max(1, min(len(todo), 8 * options.workers)),
        )
        from emotion2vec_webui.audio.format import DecodeOptions
        from emotion2vec_webui.runs.url_fetch import FetchPolicy

        decode_kwargs = {
            "limits": AudioLimits.from_settings(settings),
            "decode_options": DecodeOptions(options.channels, options.audio_stream),
            "fetch_policy": FetchPolicy.from_settings(settings),
        }
        ds = ds.map(decode_row, fn_kwargs=decode_kwargs, num_cpus=0.25)
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
