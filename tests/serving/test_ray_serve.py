"""``serve --ray``: the REST API with its model on two Ray Serve replicas of the tiny model.

One local Ray cluster for the module (``ray.init`` on loopback, 4 logical CPUs
on this 2-core machine), one ``serve --ray --address … --replicas 2`` server
process joined to it, with a token (auth is exercised on every call), an
input folder and ``E2V_WINDOW_S=2`` (so a 5 s clip takes the long-audio path:
windows' features from the replicas, stitched and classified through the
replicas' head here). The REST suite's core cases run unchanged against it
(imported from test_api.py); then its results are compared with the
single-process engine's, and one replica is killed during a load of 20
concurrent requests.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import wave

import httpx
import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone
from emotion2vec_webui.labels import EMOTIONS
from tests.server_util import ServerProcess, server_env
from tests.serving.test_api import (  # noqa: F401  (the REST suite's core cases, run here against serve --ray)
    AUTH,
    TOKEN,
    clip,
    test_bad_requests_get_the_error_shape,
    test_frame_granularity_without_embedding,
    test_health_and_readiness_are_open,
    test_json_base64_and_audio_path_match_multipart,
    test_recognize_multipart_writes_a_complete_run,
    test_request_id_round_trip,
    test_token_is_required_for_the_api,
    test_unknown_routes_and_methods,
)
from tests.spec_check import check_result

pytestmark = [pytest.mark.ray, pytest.mark.slow]

WINDOW_S = 2.0  # the server's E2V_WINDOW_S: a 5 s clip is analysed in windows


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster on loopback for this module; yields its address."""
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'emotion2vec-webui[ray]'")
    import ray

    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # loopback only, started here
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=128 << 20, namespace="e2v-tests")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def server(ray_cluster, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-server")
    (root / "inputs").mkdir()
    env = server_env(tiny_model_dir, root, api_token=TOKEN, input_dirs=root / "inputs", max_per_client=0,
                     max_queue=64, window_s=WINDOW_S)  # fmt: skip
    env["RAY_AUTH_MODE"] = "disabled"
    args = ["--ray", "--address", ray_cluster, "--replicas", "2"]
    with ServerProcess(env, wait_ready=False, log_path=root / "server.log", args=args) as srv:
        srv.wait("/readyz", 180)
        srv.root, srv.outputs, srv.inputs = root, root / "outputs", root / "inputs"
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def anon(server):
    """test_api's cases without credentials, over the socket."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def app(server):
    """What test_api's cases read of their app: ``root`` (its ``inputs/``)."""
    return server


def _clip_bytes(seconds: float, seed: int) -> bytes:
    audio = tone(seconds, 16000, freq=150 + 30 * seed) + 0.1 * noise(seconds, 16000, seed=seed)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_readyz_and_metrics_tell_the_replicas(server, client):
    body = httpx.get(server.url + "/readyz").json()
    replicas = body["replicas"]
    assert body["ready"] is True and replicas["running"] == 2, body
    assert (replicas["min"], replicas["max"]) == (2, 2) and replicas["states"]["RUNNING"] == 2
    text = client.get("/metrics").text
    assert 'e2v_model_replicas{state="running"} 2.0' in text, text[-2000:]
    assert "e2v_replica_retries_total" in text and "e2v_replica_lost_total" in text


@pytest.mark.parametrize(
    "seconds, granularity", [(1.5, "utterance"), (1.5, "frame"), (5.0, "frame"), (5.0, "utterance")]
)
def test_results_equal_the_single_process_engine(server, client, engine, settings, tmp_path, seconds, granularity):
    import dataclasses

    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.runs.recognize import RecognizeOptions

    data = _clip_bytes(seconds, seed=int(seconds))
    r = client.post("/api/v1/recognize", files={"file": ("c.wav", data, "audio/wav")},
                    data={"granularity": granularity, "extract_embedding": "true"})  # fmt: skip
    assert r.status_code == 200, r.text
    remote = r.json()
    check_result(remote, granularity)

    path = tmp_path / "c.wav"
    path.write_bytes(data)
    local_service = Service(dataclasses.replace(settings, window_s=WINDOW_S), engine)
    options = RecognizeOptions(granularity=granularity, extract_embedding=True)
    local_service.start()
    try:
        local = local_service.recognize(path, options=options, write=False).result
    finally:
        local_service.stop()

    assert remote["emotion"] == local["emotion"]
    assert all(abs(remote["scores"][k] - local["scores"][k]) <= 1e-5 for k in EMOTIONS), (remote["scores"], local)
    embedding = np.load(io.BytesIO(client.get(remote["files"]["embedding.npy"]).content))
    assert embedding.shape == tuple(local["embedding"]["shape"])
    if granularity == "frame":
        a, b = np.asarray(remote["frames"]["raw_scores"]), np.asarray(local["frames"]["raw_scores"])
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-3, atol=1e-6)


def test_killing_a_replica_under_load_loses_no_request(server, client, ray_cluster):
    """20 concurrent requests of 5 s clips (3 windows each); one replica killed once the first answer is in:
    every request is answered 200 with a complete run folder, or a typed 503; none hangs or vanishes."""
    import ray

    clips = [_clip_bytes(5.0, seed=i) for i in range(20)]
    answers: list[httpx.Response | BaseException] = [None] * 20
    first_done = threading.Event()

    def post(i: int) -> None:
        try:
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
                answers[i] = c.post("/api/v1/recognize", files={"file": (f"load{i}.wav", clips[i], "audio/wav")},
                                    data={"granularity": "frame"})  # fmt: skip
        except BaseException as exc:  # noqa: BLE001  (recorded: a lost request fails the test below)
            answers[i] = exc
        first_done.set()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    assert first_done.wait(120), "no answer within 120 s"
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "E2VModel" in a["name"]]
    assert len(replicas) == 2, replicas
    victim = replicas[0]
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    killed_with_open = sum(a is None for a in answers)
    deadline = time.monotonic() + 150
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))

    assert killed_with_open > 0, "every request was answered before the kill: nothing was in flight"
    ok = 0
    for i, r in enumerate(answers):
        assert isinstance(r, httpx.Response), f"request {i} got no answer: {r!r}"
        if r.status_code == 200:
            ok += 1
            body = r.json()
            check_result(body, "frame")
            run = server.outputs / body["run_id"]
            assert json.loads((run / "result.json").read_text("utf-8"))["scores"] == body["scores"]
            assert (run / "processed_audio.wav").is_file() and (run / "run.log").is_file()
        else:
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "model_unavailable" and " / " in error["message"], error
            assert r.headers.get("retry-after")
    assert ok >= 1
    metrics = client.get("/metrics").text

    def counter(name: str) -> float:
        lines = [line for line in metrics.splitlines() if line.startswith(name + " ")]
        assert lines, f"{name} missing from /metrics"
        return float(lines[0].split()[-1])

    # The victim's calls in flight (if the kill found any: on a fast run it may have been between calls) were sent
    # again; a call whose second replica died too is counted lost and answered 503 — none vanished. (The retry is
    # forced, with a replica dying mid-call, in test_ray_backend.py.)
    retried, lost = counter("e2v_replica_retries_total"), counter("e2v_replica_lost_total")
    assert lost <= sum(isinstance(r, httpx.Response) and r.status_code == 503 for r in answers), (retried, lost)
    print(f"killed one of two replicas with {killed_with_open} requests open: {retried:.0f} calls sent again, "
          f"{lost:.0f} answered 503")

    # the survivor keeps the server ready while Serve starts a replacement (loading it takes as long as a start)
    body = httpx.get(server.url + "/readyz").json()
    assert body["ready"] and body["replicas"]["running"] >= 1, body
