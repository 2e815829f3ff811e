"""What a batch runs over: a folder, a glob, or a list file, turned into :class:`BatchItem` s.

* A folder is searched recursively for files with an audio extension.
* A glob (``clips/**/*.wav``) is expanded with ``recursive=True``.
* A list file is ``.txt``/``.lst`` (one path per line, ``#`` comments) or
  ``.csv`` with a ``path`` column and an optional ``label`` column; relative
  paths are relative to the list file's folder. A line (or ``path``) that
  is a URL (``https://…``) is downloaded when its turn comes, under the
  same rules as REST's ``audio_url`` (``runs/inputs/url_fetch.py``).

Reference labels come, in this order, from a CSV ``label`` column, from the
file names of two common corpora (anywhere in the name, so a prefixed or
suffixed name such as ``ravdess_03-01-05-02-01-01-03.wav`` still counts), or
from the folder an input sits in (folder-per-label: ``angry/x.wav``, when
the folder's name is a label we know). So a folder of RAVDESS or CREMA-D
clips is evaluated without a list file:

* RAVDESS ``03-01-05-01-02-01-12.wav``: the third field is the emotion
  (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
  08 surprised).
* CREMA-D ``1001_DFA_ANG_XX.wav``: the third field is ANG, DIS, FEA, HAP,
  NEU or SAD.

:data:`LABEL_SOURCES` names these places for the report that says no
labels were found.

Labels are kept as the dataset spells them; :mod:`evaluation` maps them to
our nine classes.
"""

from __future__ import annotations

import csv
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from emotion2vec_webui.audio.format import AUDIO_EXTENSIONS as _ACCEPTED_EXTENSIONS
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.url_fetch import AudioUrl, is_url
from emotion2vec_webui.user_text import clean_name

AUDIO_EXTENSIONS = _ACCEPTED_EXTENSIONS  # every format the decoder accepts (audio/format.py FORMATS)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".csv", ".tsv"})

# Searched anywhere in the stem: digits may not continue the pattern on either side.
_RAVDESS_RE = re.compile(r"(?<!\d)\d{2}-\d{2}-(\d{2})-\d{2}-\d{2}-\d{2}-\d{2}(?![\d-])")
_RAVDESS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_CREMAD_RE = re.compile(r"(?<![\dA-Za-z])\d{4}_[A-Z]{3}_(ANG|DIS|FEA|HAP|NEU|SAD)_[A-Z]{1,2}(?![A-Za-z\d])")
_CREMAD = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
# Where labels were looked for, for the report when a batch has none (English, Chinese).
LABEL_SOURCES = (
    "folder-per-label, CSV label column, RAVDESS/CREMA-D names",
    "按标签分文件夹、CSV 的 label 列、RAVDESS/CREMA-D 文件名",
)


@dataclass(frozen=True)
class BatchItem:
    file: str  # absolute path as a string: the item's identity in summaries and on resume
    label: str | None = None  # the reference label as the dataset spells it, if known
    name: str | None = None  # what the user calls the input (an upload's original name); None: ``file``

    def __post_init__(self) -> None:
        # Labels enter here (list files, folder names, training sets): kept without control or bidi characters.
        if self.label is not None:
            object.__setattr__(self, "label", clean_name(self.label))

    @property
    def display(self) -> str:
        """The input as the user knows it: the uploaded file's name, else its path."""
        return self.name or self.file


def label_from_filename(path: str | os.PathLike) -> str | None:
    """The emotion a RAVDESS or CREMA-D file name encodes, or None.

    Args:
        path: a file path; only its stem is read.

    Returns:
        ``neutral``, ``calm``, ``happy`` … as the dataset names them, or None.
    """
    stem = Path(path).stem
    m = _RAVDESS_RE.search(stem)
    if m:
        return _RAVDESS.get(m.group(1))
    m = _CREMAD_RE.search(stem)
    if m:
        return _CREMAD[m.group(1)]
    return None


def label_from_folder(path: Path, root: Path) -> str | None:
    """The name of the folder ``path`` sits in below ``root`` when it is a label we know (folder-per-label)."""
    from emotion2vec_webui.jobs.evaluation import map_label

    parent = path.parent
    if parent == root or not parent.is_relative_to(root):
        return None
    return parent.name if map_label(parent.name) is not None else None


def item_source(item: BatchItem) -> tuple:
    """``(source, source_name)`` for :meth:`Recognition.decode`: an :class:`AudioUrl` for URL items, else the path."""
    if is_url(item.file):
        return AudioUrl(item.file), None
    return item.file, Path(item.file).name


def _list_entry(base: Path, raw: str, label: str | None = None) -> BatchItem:
    if is_url(raw):  # kept as written (not a path); the label comes from the list or the URL's file name
        label = (label or "").strip() or label_from_filename(raw.split("?", 1)[0])
        return BatchItem(raw.strip(), label)
    return _item(_relative_to(base, raw), label)


def is_audio_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _item(path: Path, label: str | None = None, root: Path | None = None) -> BatchItem:
    label = (label or "").strip() or label_from_filename(path)
    if not label and root is not None:
        label = label_from_folder(path, root)
    return BatchItem(str(path.expanduser().absolute()), label)


def discover_inputs(spec: str | os.PathLike) -> list[BatchItem]:
    """Expand a folder, glob, list file or single audio file into batch items.

    Args:
        spec: the ``INPUT`` argument of ``batch``.

    Returns:
        Items in a stable order (sorted paths; list files keep their order),
        without duplicates.

    Raises:
        E2VError: ``bad_request`` when nothing matches or a list file is malformed.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_audio_path(p) and not _hidden(p, path))
        items = [_item(p, root=path) for p in found]
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        items = read_list_file(path)
    elif path.is_file():
        items = [_item(path)]
    elif glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
        items = [_item(p) for p in found if p.is_file() and is_audio_path(p)]
    else:
        raise E2VError("bad_request", f"{text}: no such folder, list file or audio file, and not a glob pattern.")
    seen: set[str] = set()
    unique = [it for it in items if not (it.file in seen or seen.add(it.file))]  # first occurrence wins
    if not unique:
        raise E2VError(
            "bad_request", f"{text}: no audio files found (extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})."
        )
    return unique


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def read_list_file(path: Path) -> list[BatchItem]:
    """Read a ``.txt`` (one path per line) or ``.csv`` (``path`` [, ``label``]) list of inputs.

    Raises:
        E2VError: ``bad_request`` when a CSV has no ``path`` column.
    """
    base = path.parent
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
            if "path" not in fields:
                raise E2VError("bad_request", f"{path}: a CSV list needs a 'path' column (and optionally 'label').")
            items = []
            for row in reader:
                raw = (row.get(fields["path"]) or "").strip()
                if raw:
                    label = row.get(fields["label"]) if "label" in fields else None
                    items.append(_list_entry(base, raw, label))
            return items
    items = []
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            items.append(_list_entry(base, line))
    return items


def _relative_to(base: Path, raw: str) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else base / p
