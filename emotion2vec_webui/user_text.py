"""Text users give us, made safe to keep and to export: names, and the cells of every CSV the product writes.

Names (speaker names, head labels and their Chinese names, batch labels) pass
through :func:`clean_name` where they enter: control characters (Unicode
category ``Cc``: NUL, ESC, DEL, C1 …) and the bidirectional formatting
characters (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C) are removed,
so a stored name cannot hide text, reorder what a reader sees (``abc‮gnp.exe``)
or carry a terminal escape. Breaks (tab, newline, U+0085, U+2028 …) become one
space: a name is one line. Other format characters stay (a zero-width joiner
is part of emoji sequences).

CSV cells pass through :func:`csv_cell` in every writer (``turns.csv``,
``frames.csv``, ``summary.csv``, ``turns_summary.csv``,
``confusion_matrix.csv``): a string that starts with ``=``, ``+``, ``-``,
``@``, a tab, CR or LF is written with a leading ``'``, so Excel, LibreOffice and
Google Sheets show it as text instead of evaluating it (OWASP's advice on CSV
injection). Numbers stay numbers: non-string cells are never changed, and a
string that is exactly a decimal number (``-0.5``, ``+3``, ``-1.5e-07``) is
left as it is — a spreadsheet reads it as that number, not as a formula, and
``turns_summary.csv`` copies such cells from ``turns.csv`` as text. A cell that
already starts with ``'`` is not quoted again, so rewriting a file is stable.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # LRE RLE PDF LRO RLO
    "\u2066\u2067\u2068\u2069"  # LRI RLI FSI PDI
    "\u200e\u200f\u061c"  # LRM RLM ALM
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _keep(ch: str) -> str:
    if ch.isspace():
        return " "
    if ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc":
        return ""
    return ch


def clean_name(value: object) -> str:
    """A name as one line without control or bidi formatting characters, spaces collapsed and trimmed.

    Args:
        value: the name as given (anything; ``str()`` of it is cleaned).

    Returns:
        The cleaned name (possibly empty).
    """
    return " ".join("".join(_keep(ch) for ch in str(value)).split())


def csv_cell(value):
    """``value`` as a CSV cell no spreadsheet evaluates: a formula-like string gets a leading ``'``.

    Non-strings and strings that are exactly a decimal number are returned unchanged.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_row(values: Iterable) -> list:
    """A row of :func:`csv_cell` values (for ``csv.writer.writerow``)."""
    return [csv_cell(v) for v in values]
