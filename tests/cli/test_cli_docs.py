"""docs/cli.md shows each command's real ``--help``: the docs and the parser cannot drift apart.

Regenerate the help blocks after changing a flag: ``python -m tests.cli.test_cli_docs``.
"""

from __future__ import annotations

import os
import re
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from emotion2vec_webui.cli.main import COMMANDS, build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps to $COLUMNS


def help_text(command: str) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        out = StringIO()
        with redirect_stdout(out):
            try:
                build_parser().parse_args([command, "--help"])
            except SystemExit:  # --help prints, then exits
                pass
        return out.getvalue().strip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def block(command: str) -> str:
    return f"## `{command}`\n\n```\n{help_text(command)}\n```\n"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_docs_show_the_real_help(command):
    assert block(command) in DOC.read_text("utf-8"), (
        f"docs/cli.md's `{command}` section differs from `--help`: run python -m tests.cli.test_cli_docs"
    )


def regenerate() -> None:
    text = DOC.read_text("utf-8")
    head = re.split(r"\n## `", text, maxsplit=1)[0].rstrip() + "\n\n"
    DOC.write_text(head + "\n".join(block(c) for c in COMMANDS), "utf-8")


if __name__ == "__main__":
    regenerate()
