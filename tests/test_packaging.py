"""The package's own metadata builds with setuptools' warnings as errors (issue 33: the TOML-table
``license`` was deprecated, with builds to stop working after 2027-02-18)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_builds_with_warnings_as_errors(tmp_path):
    code = (
        "import setuptools.build_meta as b, sys\n"
        f"print(b.prepare_metadata_for_build_wheel({str(tmp_path)!r}))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    meta = next(tmp_path.glob("*.dist-info")) / "METADATA"
    text = meta.read_text()
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text
