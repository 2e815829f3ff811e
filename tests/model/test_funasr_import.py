"""FunASR imported for the classes a config names registers the same classes as ``import funasr`` in full.

Each side runs in a fresh interpreter (``sys.modules`` is process-wide): one imports FunASR in full,
the other only through :mod:`emotion2vec_webui.model.funasr_import`, for every published config the
project loads (Emotion2vec+ large, SenseVoiceSmall, Paraformer-zh, CAM++, FSMN-VAD) and the tiny
stand-in's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CONFIGS = """
import json, sys, yaml
from importlib import resources
from emotion2vec_webui.model.standins_asr import reference_config
configs = {kind: reference_config(kind) for kind in ("sensevoice", "paraformer-zh", "campplus", "fsmn-vad")}
configs["fsmn-vad"]["frontend"] = "WavFrontendOnline"  # as the stand-in and the published folder have it
large = resources.files("emotion2vec_webui.model").joinpath("data/emotion2vec_plus_large.config.yaml")
configs["emotion2vec_plus_large"] = yaml.safe_load(large.read_text("utf-8"))
configs["tiny"] = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
"""

# Which class each string of each config resolves to in every table, after the import under test.
REPORT = """
from funasr.register import tables
def strings(v):
    if isinstance(v, str): yield v
    elif isinstance(v, dict):
        for x in v.values(): yield from strings(x)
    elif isinstance(v, list):
        for x in v: yield from strings(x)
found = {}
for kind, cfg in configs.items():
    for name in sorted(set(strings(cfg))):
        for table in dir(tables):
            classes = getattr(tables, table)
            if table.endswith("_classes") and table not in ("dataset_classes", "index_ds_classes",
                                                            "dataloader_classes", "batch_sampler_classes"):
                if name in classes:
                    cls = classes[name]
                    found[f"{kind}:{table}:{name}"] = f"{cls.__module__}.{cls.__qualname__}"
modules = sum(1 for m in sys.modules if m == "funasr" or m.startswith("funasr."))
print(json.dumps({"found": found, "modules": modules, "models": len(tables.model_classes),
                  "others": sorted(m for m in ("sklearn", "transformers") if m in sys.modules)}))
"""

FULL = CONFIGS + "import funasr\n" + REPORT
# the default models' configs first (one report), then Paraformer-zh's in the same process (a second report), as
# a server that loads the emotion model and later the alternative ASR model would; ``import funasr`` in between
# gets the same package object
PARTIAL = CONFIGS + (
    "all_configs = dict(configs)\n"
    "configs = {kind: all_configs[kind] for kind in sys.argv[2].split(',')}\n"
    "from emotion2vec_webui.model import funasr_import\n"
    "for cfg in configs.values():\n"
    "    funasr_import.register_config(cfg)\n"
    "import funasr\n"
    "assert funasr.AutoModel.__module__ == 'funasr.auto.auto_model'\n"
) + REPORT + (
    # auto_model's clustering backend (scikit-learn) put off until used: then FunASR's real one
    "from funasr.auto import auto_model\n"
    "backend = auto_model.ClusterBackend()\n"
    "from funasr.models.campplus.cluster_backend import ClusterBackend\n"
    "assert type(backend) is ClusterBackend and 'sklearn' in sys.modules, type(backend)\n"
    "configs = {'paraformer-zh': all_configs['paraformer-zh']}\n"
    "funasr_import.register_config(configs['paraformer-zh'])\n"
) + REPORT
DEFAULT_SET = ("tiny", "emotion2vec_plus_large", "sensevoice", "campplus", "fsmn-vad")


def _start(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _reports(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def reports(tiny_model_dir) -> dict[str, dict]:
    """Two interpreters, run at once: a plain ``import funasr``; the default models' set, then Paraformer-zh."""
    config = tiny_model_dir / "config.yaml"
    procs = [_start(FULL, config), _start(PARTIAL, config, ",".join(DEFAULT_SET))]
    try:
        (full,), (default, paraformer) = (_reports(proc) for proc in procs)
    finally:
        for proc in procs:
            proc.kill()
    found = {"full": full, "default": default, "paraformer": paraformer}
    for kind in (*DEFAULT_SET, "paraformer-zh"):
        assert any(key.startswith(f"{kind}:model_classes:") for key in found["full"]["found"]), kind
    return found


def _of(found: dict, kinds) -> dict:
    return {key: value for key, value in found.items() if key.split(":")[0] in kinds}


def test_the_default_models_classes_are_those_of_a_full_import_from_a_fraction_of_funasr(reports):
    full, partial = reports["full"], reports["default"]
    assert partial["found"] == _of(full["found"], DEFAULT_SET)
    # the point: a fraction of FunASR's modules, and none of its unrelated model families
    assert partial["modules"] * 3 < full["modules"], (partial["modules"], full["modules"])
    assert partial["others"] == []  # neither transformers nor scikit-learn (auto_model's clustering backend)


def test_a_name_several_modules_register_imports_funasr_in_full(reports):
    """Paraformer-zh's ``ParaformerSANMDecoder`` is registered by two modules: which wins is FunASR's import order."""
    full, partial = reports["full"], reports["paraformer"]
    assert partial["found"] == _of(full["found"], ("paraformer-zh",))
    assert partial["models"] == full["models"]  # every model family registered: FunASR's own __init__ ran


def test_unreadable_sources_mean_the_full_import(monkeypatch):
    """FunASR installed where its sources cannot be read (a zip): every lookup falls back to ``import funasr``."""
    from emotion2vec_webui.model import funasr_import

    calls = []

    def unreadable():
        raise OSError("not a directory")

    monkeypatch.setattr(funasr_import, "_read_index", unreadable)
    monkeypatch.setattr(funasr_import, "complete", lambda: calls.append("complete"))
    monkeypatch.setattr(funasr_import, "package", lambda: type("Partial", (), {funasr_import._PARTIAL: True})())
    funasr_import.register_config({"model": "Emotion2vec", "tokenizer": "CharTokenizer"})
    funasr_import.registry("Emotion2vec")
    assert calls == ["complete", "complete"]
