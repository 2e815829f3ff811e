"""README's export command after `run.sh`'s set-up (issue 33): what it needs is installed, and when it is not,
``export`` says so in one line before loading any model."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomllib

from emotion2vec_webui.cli.export import EXPORT_NEEDS

ROOT = Path(__file__).resolve().parents[2]


def _readme_export_command() -> list[str]:
    """The ``emotion2vec-webui export …`` line of README's export section, split like a shell would."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*(\.venv/bin/)?emotion2vec-webui export ", ln)]
    assert lines, "README shows no export command"
    return shlex.split(lines[0])


def test_run_sh_installs_what_export_needs():
    # run.sh's serving set-up installs "." (the default dependencies) and nothing else.
    run_sh = (ROOT / "run.sh").read_text()
    assert 'target="."' in run_sh
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in deps}
    assert set(EXPORT_NEEDS) <= names


def test_readme_export_command_runs(tiny_model_dir, tmp_path, capfd):
    """README's arguments through the CLI's ``main``, in this process (the same venv ``run.sh`` set up).

    What is checked is that the command as README spells it parses and exports both graphs (fp32 and int8) with
    what is installed; a subprocess added only the ~5 s start of Python, torch and FunASR. The process's own
    start (a missing ``onnx`` told in one line before any model loads) stays a subprocess below.
    """
    from emotion2vec_webui.cli.main import main

    argv = _readme_export_command()
    assert argv[1] == "export" and "--quantize" in argv
    out = tmp_path / "e2v-onnx"
    args = [out if a == "./e2v-onnx" else a for a in argv[2:]]
    args = [str(tiny_model_dir) if prev == "--model" else str(a) for prev, a in zip([None, *args[:-1]], args, strict=True)]
    code = main(["export", *args])
    err = capfd.readouterr().err
    assert code == 0, err[-2000:]
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert "Traceback" not in err


def test_export_without_onnx_says_what_to_install(tmp_path):
    # Hide onnx the way a slim environment lacks it: the command answers in one line, before any model loads.
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda n, *a: None if n == 'onnx' else real(n, *a)\n"
        "from emotion2vec_webui.cli.main import main\n"
        f"sys.exit(main(['export', {str(tmp_path / 'out')!r}, '--model', 'no-such-model-dir']))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2
    lines = [ln for ln in ran.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install onnx" in lines[0] and "导出" in lines[0]
    assert not (tmp_path / "out").exists()
