"""``batch --engine ray``: Ray Data on a local 2-CPU instance gives the local engine's summary.

The module's tests share one local Ray instance, started once by the product's own :func:`start_ray` (the
``ray_or_skip`` fixture) and stopped after the last of them: ``run_ray`` then uses the running instance as it
uses a cluster, and leaves it running. Each test still runs its batch through Ray Data (decode tasks, classify
actors, rows back to the driver); what no longer repeats is the ~5-10 s start and stop of Ray itself.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.jobs.batch import BatchOptions, classify_group, finish_batch, open_batch, run_local
from emotion2vec_webui.jobs.inputs import discover_inputs
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.storage import RUN_ID_RE

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_or_skip():
    """One local Ray instance for the module, started the way ``batch --engine ray`` starts it."""
    pytest.importorskip("ray.data", reason="Ray is not installed: pip install 'emotion2vec-webui[ray]'")
    import ray

    from emotion2vec_webui.jobs.ray_batch import start_ray

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)  # always a local instance here
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setattr("os.cpu_count", lambda: 2)  # the "local Ray instance (2 CPUs)"
        assert start_ray(1), "Ray was already running"
        try:
            assert ray.cluster_resources().get("CPU") == 2
            yield
        finally:
            ray.shutdown()


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


def test_ray_engine_gives_the_local_engines_turns_by_channel(ray_or_skip, engine, settings, stereo_dialogue, tmp_path):
    """Issue 27: on Ray each input is decoded through the guarded decoder, each channel on its own for
    ``--speakers channels``, and a URL through the same fetcher: the same speakers and turns as the local
    engine (not the mix as one speaker), and ``audio.source_url`` kept."""
    import functools
    import http.server
    import threading

    from emotion2vec_webui.jobs.ray_batch import run_ray

    path, _spans = stereo_dialogue
    clips = tmp_path / "calls"
    clips.mkdir()
    (clips / "call.wav").write_bytes(path.read_bytes())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(clips)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/call.wav"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{clips / 'call.wav'}\n{url}\n", "utf-8")
    items = discover_inputs(listing)
    options = BatchOptions(RecognizeOptions(extract_embedding=False, speakers="channels"), batch_size=2, workers=1)
    settings = dataclasses.replace(settings, url_allow=("127.0.0.1",))
    try:
        local = _batch(
            items, tmp_path / "local", settings, options,
            lambda todo, summary, s, o: run_local(todo, summary, s, o, lambda pairs: classify_group(engine, pairs, s, o)),
        )  # fmt: skip
        ray_rows = _batch(items, tmp_path / "ray", settings, options, run_ray)
    finally:
        server.shutdown()
        server.server_close()

    def result(folder, row) -> dict:
        return json.loads((tmp_path / folder / row["run_folder"] / "result.json").read_text())

    assert [r["status"] for r in local] == [r["status"] for r in ray_rows] == ["ok", "ok"], (local, ray_rows)
    turns = 0
    for a, b in zip(local, ray_rows, strict=True):
        mine, theirs = result("local", a), result("ray", b)
        assert [s["id"] for s in theirs["speakers"]] == [s["id"] for s in mine["speakers"]] == ["left", "right"]
        assert theirs["audio"]["source_url"] == mine["audio"]["source_url"]
        assert len(theirs["turns"]) == len(mine["turns"]) > 1
        for t, u in zip(mine["turns"], theirs["turns"], strict=True):
            assert (t["speaker"], t["emotion"]) == (u["speaker"], u["emotion"])
            assert abs(t["start_s"] - u["start_s"]) < 1e-6 and abs(t["end_s"] - u["end_s"]) < 1e-6
            assert all(abs(t["scores"][k] - u["scores"][k]) <= 1e-5 for k in EMOTIONS)
        turns += len(mine["turns"])
    assert [result("ray", b)["audio"]["source_url"] for b in ray_rows] == [None, url]
    assert (tmp_path / "ray" / "turns_summary.csv").read_text().count("\n") == turns + 1
