"""``import gradio`` after the ui package: the component classes are made without rewriting Gradio's stubs."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

CHECK = """
import json, sys
import emotion2vec_webui.ui
from emotion2vec_webui.ui import gradio_import
import gradio
from gradio import component_meta
print(json.dumps({"replaced": component_meta.create_or_modify_pyi is gradio_import.no_stubs,
                  "finder_left": any(type(f).__name__ == "_Finder" for f in sys.meta_path),
                  "blocks": gradio.Blocks.__module__}))
"""


def test_the_ui_package_makes_gradio_skip_its_stub_rewriting():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {"replaced": True, "finder_left": False, "blocks": "gradio.blocks"}


def test_gradio_still_rewrites_stubs_through_that_function():
    """When this fails, Gradio no longer calls the function ui/gradio_import.py replaces: update or remove it."""
    from gradio import component_meta

    assert "create_or_modify_pyi(" in inspect.getsource(component_meta.ComponentMeta.__new__)
