"""A labelled set named on the Train tab: a server folder or CSV, or an uploaded ZIP / CSV unpacked for one job.

Training a head and fitting a calibration (``ui/train_tab.py``, ``ui/calibration_tab.py``) take their data the
same way: :func:`labelled_data` reads the form, :func:`unpack_upload` unpacks an upload under
``<outputs>/.train-uploads/<id>/``, a folder the job owns and removes when it ends.
"""

from __future__ import annotations

import shutil
import uuid
import zipfile
from pathlib import Path

from emotion2vec_webui.archives import extract_zip
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.inputs import AUDIO_EXTENSIONS
from emotion2vec_webui.jobs.train_head import labelled_items
from emotion2vec_webui.jobs.train_jobs import check_inside, resolve_training_data

UPLOADS = ".train-uploads"  # under the outputs root
MAX_ZIP_MEMBERS = 10_000  # entries (files and folders) of an uploaded ZIP


def labelled_data(folder_text: str | None, upload, settings) -> tuple[Path, Path | None]:
    """The labelled set the form names: the upload if there is one, else the server folder or CSV.

    Args:
        folder_text: a folder or CSV inside ``E2V_INPUT_DIRS`` (:func:`jobs.train_jobs.resolve_training_data`).
        upload: Gradio's uploaded file (a path, or an object with ``name``), or None.
        settings: the input folders, the outputs folder, the upload budget.

    Returns:
        (the labelled folder or CSV, the unpacked upload's folder the caller owns and removes, or None).

    Raises:
        E2VError: ``bad_request`` when neither is given or the upload is unusable; ``forbidden``/``not_found``.
    """
    if upload:
        data = unpack_upload(str(getattr(upload, "name", upload)), settings)
        return data, next(p for p in [data, *data.parents] if p.parent.name == UPLOADS)
    if folder_text and folder_text.strip():
        data, _ = resolve_training_data(folder_text, settings.input_dirs)
        return data, None
    raise E2VError(
        "bad_request",
        "Name a server folder inside E2V_INPUT_DIRS, or upload a ZIP / CSV. / 请填写服务器文件夹或上传 ZIP / CSV。",
    )


def unpack_upload(path: str, settings) -> Path:
    """An uploaded ZIP (a folder per label, or a CSV with audio) or CSV (server paths) as a labelled set.

    ZIPs are unpacked by :func:`archives.extract_zip` into ``<outputs>/.train-uploads/<id>/``: a hostile
    member (absolute, drive, ``..``, a link …) refuses the whole ZIP; at most ``MAX_ZIP_MEMBERS`` entries and
    ``E2V_MAX_BATCH_UPLOAD_MB`` unpacked; audio and CSV files are kept, hidden ones (``.x``, ``__MACOSX/._x``)
    skipped. The folder is removed when unpacking fails, and by the job that used it when it ends
    (``ui/train_tab.run_training``, ``ui/calibration_tab.run_calibration``).

    Raises:
        E2VError: ``bad_request`` for an unusable upload.
    """
    uploads = Path(settings.output_dir).resolve() / UPLOADS
    uploads.mkdir(parents=True, exist_ok=True)
    dest = uploads / uuid.uuid4().hex[:12]
    src = Path(path)
    if src.suffix.lower() not in (".csv", ".tsv"):
        if not zipfile.is_zipfile(src):
            raise E2VError("bad_request", "Upload a .zip (a folder per label) or a .csv (path,label). / 请上传 ZIP 或 CSV。")
        budget = int(settings.max_batch_upload_mb * 1024 * 1024)
        written = extract_zip(src, dest, max_members=MAX_ZIP_MEMBERS, max_bytes=budget, keep=_wanted)
    else:
        dest.mkdir()
        written = None
    try:
        return _labelled_set(src, dest, written, settings)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _wanted(name: str) -> bool:
    """ZIP members the Train tab keeps: audio and CSV/TSV lists, nothing hidden."""
    suffix = Path(name).suffix.lower()
    hidden = any(p.startswith(".") for p in name.split("/"))
    return not hidden and (suffix in AUDIO_EXTENSIONS or suffix in (".csv", ".tsv"))


def _labelled_set(src: Path, dest: Path, written: list[Path] | None, settings) -> Path:
    if written is None:  # a CSV lists server files: they must be inside E2V_INPUT_DIRS
        target = dest / src.name
        shutil.copyfile(src, target)
        check_inside(labelled_items(target), settings.input_dirs)
        return target
    lists = [p for p in written if p.suffix.lower() in (".csv", ".tsv")]
    data = lists[0] if len(lists) == 1 else dest
    if data == dest:  # a single top folder holding the label folders counts as the set itself
        tops = [p for p in dest.iterdir()]
        if len(tops) == 1 and tops[0].is_dir() and all(p.is_dir() for p in tops[0].iterdir()):
            data = tops[0]
    check_inside(labelled_items(data), [dest])
    return data
