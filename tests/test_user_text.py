"""Text users give us: names lose control and bidi characters; CSV cells never start a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import pytest

from emotion2vec_webui.user_text import BIDI_CONTROLS, clean_name, csv_cell, csv_row


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Agent", "Agent"),
        ("Agent 小王", "Agent 小王"),
        ("a\x00b", "ab"),  # NUL
        ("a\x07\x1b[31mb", "a[31mb"),  # BEL, ESC (terminal escapes lose their ESC)
        ("a\x7f\x85\x9fb", "a b"),  # DEL and C1 controls (U+0085 is a line break: a space)
        ("a\tb\r\nc", "a b c"),  # line and tab breaks become one space: a name is one line
        ("abc\u202egnp.exe", "abcgnp.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("\u2066x\u2069\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u2067\u2068", "x"),
        ("  spaced   out  ", "spaced out"),
        ("👩\u200d💻", "👩\u200d💻"),  # a zero-width joiner is not a bidi control: emoji sequences stay whole
        ("", ""),
    ],
)
def test_clean_name(raw, clean):
    assert clean_name(raw) == clean


def test_every_bidi_control_is_stripped():
    assert clean_name("".join(BIDI_CONTROLS) + "ok") == "ok"
    assert len(BIDI_CONTROLS) == 12


@pytest.mark.parametrize(
    "cell",
    [
        "=cmd|' /C calc'!A0",
        "+1+1",
        "-2+3",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
        "\n=1",
        "-",
        "=",
        "+",
        "@",
        "-x",
        "- 1",
        "-1-1",
        "-inf",
        "-nan",
        "-1e",
        "--1",
    ],  # fmt: skip
)
def test_formula_like_cells_are_quoted(cell):
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell",
    ["plain", "", " =1", "a=b", "'=already", "中文", "-0.5", "+3", "-12", "-1.5e-07", "+.5", "-5.", "1e5", "0.25"],
)
def test_ordinary_cells_and_signed_numbers_stay(cell):
    assert csv_cell(cell) == cell


@pytest.mark.parametrize("value", [-0.5, -3, 0, 1.25, None, True])
def test_non_strings_stay(value):
    assert csv_cell(value) is value


def test_quoting_is_idempotent():
    once = csv_cell("=1+1")
    assert csv_cell(once) == once


def test_csv_row_round_trips_through_the_csv_module():
    buf = io.StringIO()
    csv.writer(buf).writerow(csv_row(['=HYPERLINK("http://x")', -0.25, "-0.25", "a,b"]))
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == ['\'=HYPERLINK("http://x")', "-0.25", "-0.25", "a,b"]
