"""Server paths as a user sees them in messages: relative to the folders they know, never absolute.

A client knows the input folders by the paths it sends (``audio_path``,
``data_path`` are relative to an ``E2V_INPUT_DIRS`` folder), and the outputs
and heads folders by their names. An absolute path in an error message tells
a client where the server keeps its files (issue 26: ``.train-uploads/<id>/…``
and head folders were named in full), so the faces pass messages through
:func:`shown_paths` before they leave: a file inside an input folder is named
relative to it (``happy/clip.wav``), inside the outputs or heads folder by that
folder's name (``outputs/…``, ``heads/…``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _forms(folder: str | os.PathLike) -> set[str]:
    """The spellings of a folder that can reach a message: as configured (if absolute), absolute, resolved."""
    path = Path(folder).expanduser()
    forms = {str(path.absolute()), str(path.resolve())}
    if path.is_absolute():
        forms.add(str(path))
    return {f.rstrip(os.sep) for f in forms if f.rstrip(os.sep)}


def known_folders(settings) -> list[tuple[str, str, str]]:
    """``(absolute spelling, shown before a path below it, shown alone)`` per known folder, longest first.

    Args:
        settings: the server's :class:`config.Settings` (``input_dirs``, ``output_dir``, ``heads_dir``).
    """
    out: dict[str, tuple[str, str]] = {}
    named = [(d, "") for d in settings.input_dirs]  # clients name files relative to an input folder
    named += [(settings.output_dir, None), (settings.heads_dir, None)]  # these by their folder's name
    for folder, below in named:
        name = Path(folder).expanduser().name or "."
        for form in _forms(folder):
            out.setdefault(form, (name + "/" if below is None else below, name))
    return sorted(((f, b, a) for f, (b, a) in out.items()), key=lambda t: len(t[0]), reverse=True)


def shown_paths(text: str, settings) -> str:
    """``text`` with every absolute spelling of a known folder replaced by what the user knows it as.

    ``<input folder>/happy/a.wav`` becomes ``happy/a.wav``; ``<outputs>/outputs_…/run.log``
    becomes ``outputs/outputs_…/run.log``; a known folder named alone becomes its name.

    Args:
        text: a message that may name server files.
        settings: the server's settings (the folders); None: ``text`` as it is.
    """
    if not text or settings is None or os.sep not in text:
        return text
    for form, below, alone in known_folders(settings):
        pattern = re.escape(form) + r"(?:(" + re.escape(os.sep) + r")|(?![\w.-]))"
        text = re.sub(pattern, lambda m, b=below, a=alone: b if m.group(1) else a, text)
    return text

