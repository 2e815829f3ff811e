"""``batch --engine ray``: Ray Data on a local 2-CPU instance gives the local engine's summary."""

from __future__ import annotations

import dataclasses
import json

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.jobs.batch import BatchOptions, classify_group, finish_batch, open_batch, run_local
from emotion2vec_webui.jobs.inputs import discover_inputs
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.storage import RUN_ID_RE

pytestmark = pytest.mark.ray


@pytest.fixture
def ray_or_skip(monkeypatch):
    pytest.importorskip("ray.data", reason="Ray is not installed: pip install 'emotion2vec-webui[ray]'")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # always a local instance here
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # the "local Ray instance (2 CPUs)"


def _batch(items, folder, settings, options, runner) -> list[dict]:
    summary, todo = open_batch(items, folder, resume=False, manifest={})
    s = dataclasses.replace(settings, output_dir=summary.folder.resolve())
    audio_s = runner(todo, summary, s, options)
    return finish_batch(summary, items, options, 0, audio_s, 1.0).rows


def test_ray_engine_matches_local_engine(ray_or_skip, engine, settings, tmp_path):
    from emotion2vec_webui.jobs.ray_batch import run_ray

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(7):
        audio = tone(1.0 + 0.2 * i, 16000, freq=120 + 40 * i) if i % 2 else noise(1.0 + 0.2 * i, 22050, seed=i)
        write_audio(clips / f"{i}.wav", audio, 16000 if i % 2 else 22050, "wav")
    (clips / "7.wav").write_bytes(b"definitely not audio" * 10)
    items = discover_inputs(clips)
    options = BatchOptions(batch_size=3, workers=1)

    local = _batch(
        items, tmp_path / "local", settings, options,
        lambda todo, summary, s, o: run_local(todo, summary, s, o, lambda pairs: classify_group(engine, pairs, s, o)),
    )  # fmt: skip
    ray_rows = _batch(items, tmp_path / "ray", settings, options, run_ray)

    assert [r["file"] for r in ray_rows] == [r["file"] for r in local]
    for a, b in zip(local, ray_rows, strict=True):
        assert (a["status"], a["emotion"], a["error_code"]) == (b["status"], b["emotion"], b["error_code"])
        if a["status"] == "ok":
            assert all(abs(a[k] - b[k]) <= 1e-5 for k in EMOTIONS), a["file"]
            assert a["duration_s"] == b["duration_s"]
            run = tmp_path / "ray" / b["run_folder"]
            assert RUN_ID_RE.match(run.name) and (run / "processed_audio.wav").exists()
            assert json.loads((run / "result.json").read_text())["scores"] == {k: b[k] for k in EMOTIONS}
    assert sum(r["status"] == "error" for r in ray_rows) == 1
    assert (tmp_path / "ray" / "summary.csv").read_text().count("\n") == 9


def test_missing_ray_gives_the_install_line(monkeypatch):
    import builtins

    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.jobs import ray_batch as batch_ray

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(E2VError) as err:
        batch_ray.import_ray()
    assert err.value.code == "bad_request" and "emotion2vec-webui[ray]" in err.value.message
