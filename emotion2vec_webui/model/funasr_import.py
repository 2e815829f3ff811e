"""FunASR imported for the classes a model folder names, not all of its ~430 modules.

``import funasr`` runs the package's ``__init__``, which walks and imports every
submodule (``pkgutil.walk_packages``) so that their ``@tables.register(...)``
decorators fill FunASR's class registry — transformers, scikit-learn,
``torch.distributed.fsdp`` and hundreds of model families we never load. On the
2-core VM that is 9.3 s against 1.6 s for ``import torch`` alone (quiet
machine; ~27 s at load 12), paid by every server start, CLI command and Ray
worker.

Here the ``funasr`` package object is made from its import spec without running
its ``__init__`` (``importlib.util.module_from_spec``: the same object, its
``__path__`` and ``__version__`` set, ``AutoModel``/``AutoFrontend`` exported
lazily as FunASR's ``__init__`` does), and only the modules that register the
names a ``config.yaml`` uses are imported. Which module registers which name is
read from the sources' ``@tables.register("<table>", "<name>")`` lines (a
regular expression over the package's files, ~30 ms).

Whenever a name is not found that way (a FunASR whose layout differs, a class
registered under a computed name), or is registered by more than one module
(then the class FunASR ends up with depends on the order of its walk and of
the imports inside it: for Paraformer-zh's ``ParaformerSANMDecoder`` it is
``e_paraformer``'s, not ``paraformer``'s), :func:`complete` runs FunASR's real
``__init__`` on the same module object: the full walk, exactly ``import
funasr``. If ``funasr`` was already imported in full, nothing here changes it.
``tests/model/test_funasr_import.py`` checks that, for every stand-in model's
config, the classes registered are those a full ``import funasr`` registers.

One more module is put off: ``funasr.auto.auto_model`` tries at its top to
import CAM++'s clustering backend (``ClusterBackend``, for ``AutoModel``'s own
speaker diarisation, which this app does not use), which imports scikit-learn:
~1.5 s of every start. :func:`auto_model` imports it with a stand-in module in
that place for the time of the import, whose ``ClusterBackend`` imports the
real module when first called and returns FunASR's real object; afterwards
``import funasr.models.campplus.cluster_backend`` gives the real module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import re
import sys
import threading
import types
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK = threading.RLock()
_PARTIAL = "__e2v_partial_import__"  # set on the package object while its __init__ has not run
_REGISTER = re.compile(r"""tables\.register\(\s*["'](\w+)["']\s*,\s*["']([^"'\s]+)["']\s*\)""")
# Tables FunASR reads when it builds a model for inference (data loading and training tables are not).
_SKIPPED_TABLES = frozenset({"dataset_classes", "index_ds_classes", "dataloader_classes", "batch_sampler_classes"})
# config.yaml keys whose value must be a registered name: a miss means "import FunASR in full".
_CLASS_KEYS = ("model", "frontend", "tokenizer", "encoder", "decoder", "predictor", "specaug", "normalize")
_AUTO_MODEL = "funasr.auto.auto_model"
_CLUSTER_BACKEND = "funasr.models.campplus.cluster_backend"  # imported by auto_model's top, in a try


def package():
    """The ``funasr`` package object: the one already imported, else a partial one (its ``__init__`` not run)."""
    with _LOCK:
        module = sys.modules.get("funasr")
        if module is not None:
            return module
        spec = importlib.util.find_spec("funasr")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("No module named 'funasr'", name="funasr")
        module = importlib.util.module_from_spec(spec)
        root = Path(next(iter(spec.submodule_search_locations)))
        version = root / "version.txt"
        module.__version__ = version.read_text("utf-8").strip() if version.is_file() else "unknown"
        module.__getattr__ = functools.partial(_lazy_export, module)
        setattr(module, _PARTIAL, True)
        sys.modules["funasr"] = module
        return module


def _lazy_export(module, name: str):
    """``funasr.AutoModel`` / ``funasr.AutoFrontend`` on the partial package, as FunASR's ``__init__`` exports them."""
    exports = {"AutoModel": auto_model, "AutoFrontend": lambda: importlib.import_module("funasr.auto.auto_frontend")}
    if name not in exports:
        raise AttributeError(f"module 'funasr' has no attribute {name!r}")
    value = getattr(exports[name](), name)
    setattr(module, name, value)
    return value


def auto_model():
    """``funasr.auto.auto_model``, imported without its clustering backend (and scikit-learn) until first used."""
    with _LOCK:
        if _AUTO_MODEL in sys.modules or _CLUSTER_BACKEND in sys.modules:
            return importlib.import_module(_AUTO_MODEL)
        stand_in = types.ModuleType(_CLUSTER_BACKEND, "Imports FunASR's clustering backend when first called.")
        stand_in.ClusterBackend = _cluster_backend
        sys.modules[_CLUSTER_BACKEND] = stand_in
        try:
            return importlib.import_module(_AUTO_MODEL)
        finally:
            if sys.modules.get(_CLUSTER_BACKEND) is stand_in:
                del sys.modules[_CLUSTER_BACKEND]


def _cluster_backend(*args, **kwargs):
    """FunASR's ``ClusterBackend(*args, **kwargs)``, its module imported now."""
    return importlib.import_module(_CLUSTER_BACKEND).ClusterBackend(*args, **kwargs)


def complete() -> None:
    """Make ``funasr`` what ``import funasr`` makes: FunASR's ``__init__`` run, every module registered."""
    with _LOCK:
        module = package()
        if not getattr(module, _PARTIAL, False):
            return
        log.info("importing FunASR in full (every module registered)")
        delattr(module, _PARTIAL)
        del module.__getattr__
        module.__spec__.loader.exec_module(module)


def _index() -> dict[str, list[str]]:
    """Registered name → the modules registering it; empty (so: the full import) when the sources cannot be read."""
    try:
        return _read_index()
    except (OSError, ValueError, TypeError, StopIteration) as exc:  # e.g. FunASR installed as a zip
        log.info("FunASR's sources could not be read for its registry (%s): importing it in full", exc)
        return {}


@functools.lru_cache(maxsize=1)
def _read_index() -> dict[str, list[str]]:
    root = Path(next(iter(importlib.util.find_spec("funasr").submodule_search_locations)))
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py"), key=lambda p: _module_name(root, p)):
        text = path.read_text("utf-8", errors="replace")
        if "tables.register" not in text:
            continue
        for table, name in _REGISTER.findall(text):
            if table in _SKIPPED_TABLES:
                continue
            modules = found.setdefault(name, [])
            module = _module_name(root, path)
            if module not in modules:
                modules.append(module)
    return found


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("funasr", *parts))


def registry(*names: str):
    """FunASR's registry (``funasr.register.tables``) with the classes registered under ``names`` in it.

    Args:
        names: registered names (``config.yaml`` values such as ``Emotion2vec``, ``WavFrontend``).

    Returns:
        ``funasr.register.tables``.
    """
    with _LOCK:
        module = package()
        if getattr(module, _PARTIAL, False):
            index = _index()
            if any(len(index.get(name, ())) != 1 for name in names):
                complete()  # not found, or registered by several modules: which one wins depends on import order
            else:
                for name in names:
                    for module_name in index[name]:
                        importlib.import_module(module_name)
        return importlib.import_module("funasr.register").tables


def register_config(config: Path | dict):
    """Register the classes a model config names (any string value FunASR registers), before ``AutoModel``.

    Args:
        config: a model folder (its ``config.yaml`` is read) or a parsed config.

    Returns:
        ``funasr.register.tables``.
    """
    if not isinstance(config, dict):
        import yaml

        config = yaml.safe_load((Path(config) / "config.yaml").read_text("utf-8")) or {}
    with _LOCK:
        if not getattr(package(), _PARTIAL, False):
            return registry()
        index = _index()
        required = [config.get(key) for key in _CLASS_KEYS if isinstance(config.get(key), str)]
        if any(name not in index for name in required):
            complete()
            return registry()
        return registry(*sorted({value for value in _strings(config) if value in index}))


def _strings(value):
    """Every string in a parsed YAML document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
