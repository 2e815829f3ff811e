"""Gradio imported without rewriting its own type stubs at every start.

Gradio 6's component metaclass (``gradio.component_meta.ComponentMeta``) calls
``create_or_modify_pyi`` for each of the ~80 component classes it defines when
``gradio`` is imported: it reads the class's source file, parses it with ``ast``
and rewrites the ``.pyi`` stub beside it in site-packages where it differs — a
help for Gradio's own development (custom components), paid at every import:
2.6 of the 4.3 s ``import gradio`` took on the 2-core VM (cProfile), in every
``serve`` start. Nothing at run time reads those stubs.

:func:`install` puts a finder first on ``sys.meta_path`` that lets the normal
finders find ``gradio.component_meta`` and, right after that module has run
(before any component class exists), replaces that one function with one that
does nothing. Everything else is Gradio's own import. If Gradio is already
imported, or no longer has the function, nothing is changed;
``tests/ui/test_gradio_import.py`` says when the second happens.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
import threading

MODULE = "gradio.component_meta"
FUNCTION = "create_or_modify_pyi"
_LOCK = threading.Lock()


def no_stubs(*args, **kwargs) -> None:
    """Stands in for Gradio's ``create_or_modify_pyi``: leaves the installed stubs as they are."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = functools.partial(_run_then_replace, spec.loader.exec_module)
                return spec
        return None


def _run_then_replace(exec_module, module) -> None:
    exec_module(module)
    if callable(getattr(module, FUNCTION, None)):
        setattr(module, FUNCTION, no_stubs)
    uninstall()


_FINDER = _Finder()


def install() -> None:
    """Before ``import gradio``: its component classes are made without rewriting their stubs."""
    with _LOCK:
        if MODULE not in sys.modules and _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    with _LOCK:
        if _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
