"""``serve --ray`` without a cluster: the flags, the retry of a dead replica's request, /readyz and /metrics.

The Ray calls go to a fake deployment handle here (its methods fail as Ray's would), so the retry rule is
checked exactly and fast; tests/serving/test_ray_serve.py runs the real thing on a local cluster.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inference.ray_options import RayServeOptions, parse_autoscale
from emotion2vec_webui.runs.inference.ray_replica import ReplicaError
from emotion2vec_webui.runs.inference.ray_service import RayBackend, RemoteScheduler, ReplicaStatus
from emotion2vec_webui.runs.inference.scheduler import InferenceRequest, StaleWindow

ray_exceptions = pytest.importorskip("ray.exceptions", reason="Ray is not installed")


class FakeMethod:
    """``handle.<method>``: ``.remote(*args)`` gives an awaitable that plays the next scripted outcome."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes = outcomes
        self.calls = 0

    def remote(self, *args):
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1

        async def answer():
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return answer()


class FakeHandle:
    def __init__(self, **methods: FakeMethod) -> None:
        self.__dict__.update(methods)


@pytest.fixture
def backend(settings):
    b = RayBackend(settings, RayServeOptions(replicas=2))
    b._thread.start()
    yield b
    b._loop.call_soon_threadsafe(b._loop.stop)


def _request():
    import numpy as np

    return InferenceRequest(np.zeros(16000, dtype=np.float32))


def test_a_dead_replicas_request_is_sent_once_more(backend):
    infer = FakeMethod([ray_exceptions.ActorDiedError(), "answer"])
    backend._handle = FakeHandle(infer=infer)
    scheduler = RemoteScheduler(backend)
    assert scheduler.submit(_request()).result(5) == "answer"
    assert (infer.calls, backend.retried, backend.lost) == (2, 1, 0)


def test_a_second_death_answers_model_unavailable(backend):
    infer = FakeMethod([ray_exceptions.ActorDiedError(), ray_exceptions.ActorDiedError()])
    backend._handle = FakeHandle(infer=infer)
    with pytest.raises(E2VError) as caught:
        RemoteScheduler(backend).submit(_request()).result(5)
    assert caught.value.code == "model_unavailable" and " / " in caught.value.message
    assert (infer.calls, backend.retried, backend.lost) == (2, 1, 1)


def test_errors_raised_on_a_replica_arrive_as_themselves(backend):
    """Not retried: an E2VError sent back as data, a stale live window, any other exception of ours."""
    stale = ray_exceptions.RayTaskError("infer", "traceback", StaleWindow("a newer live window arrived"))
    backend._handle = FakeHandle(
        infer=FakeMethod([ReplicaError("audio_too_short", "too short / 太短"), stale, ValueError("bad")])
    )
    scheduler = RemoteScheduler(backend)
    with pytest.raises(E2VError) as caught:
        scheduler.submit(_request()).result(5)
    assert caught.value.code == "audio_too_short"
    with pytest.raises(StaleWindow):
        scheduler.submit(_request()).result(5)
    with pytest.raises(ValueError):  # not a RayTaskError here: passed through untouched
        scheduler.submit(_request()).result(5)
    assert backend.retried == 0


def test_in_flight_requests_count_once_per_job(backend):
    gate = threading.Event()

    class Slow:
        calls = 0

        def remote(self, *args):
            async def answer():
                await asyncio.get_running_loop().run_in_executor(None, gate.wait)
                return "ok"

            return answer()

    backend._handle = FakeHandle(infer=Slow())
    scheduler = RemoteScheduler(backend)
    with scheduler.job() as job:
        futures = [scheduler.submit(_request(), job) for _ in range(3)]
        lone = scheduler.submit(_request())
        assert scheduler.depth == 2  # the job's three requests count once, the lone one once
        gate.set()
        assert [f.result(5) for f in [*futures, lone]] == ["ok"] * 4
    assert scheduler.depth == 0


def test_replica_states_read_while_loading_do_not_hide_them_once_deployed(backend, monkeypatch):
    """/readyz polled while the replicas load reads "not deployed"; the first read after must see them."""
    up = ReplicaStatus(2, {"RUNNING": 2}, 2, 2, "HEALTHY", 0, 0)
    reads = []
    monkeypatch.setattr(backend, "_read_counts", lambda: reads.append(1) or (None if backend._handle is None else up))
    assert backend.replica_status() is None
    backend._handle = FakeHandle()
    assert backend.replica_status().running == 2
    assert backend.replica_status().running == 2 and len(reads) == 2  # a known state is kept for the TTL


@pytest.mark.parametrize("text, expected", [("1:4", (1, 4)), (" 0:2 ", (0, 2)), ("3:3", (3, 3))])
def test_autoscale_parses(text, expected):
    assert parse_autoscale(text) == expected
    RayServeOptions(autoscale=expected)


@pytest.mark.parametrize("text", ["4", "a:b", "1:", ":2", "-1:2", "1:2:3"])
def test_autoscale_refuses_malformed_ranges(text):
    with pytest.raises(E2VError) as caught:
        parse_autoscale(text)
    assert caught.value.code == "bad_request" and " / " in caught.value.message


@pytest.mark.parametrize("kwargs", [{"replicas": 0}, {"replicas": 257}, {"autoscale": (3, 1)}, {"autoscale": (0, 0)},
                                    {"replica_cpus": 0}, {"app_name": "../x"}, {"app_name": ""}])  # fmt: skip
def test_options_out_of_bounds_are_refused(kwargs):
    with pytest.raises(E2VError) as caught:
        RayServeOptions(**kwargs)
    assert caught.value.code == "bad_request" and " / " in caught.value.message


def test_ray_flags_need_ray():
    from emotion2vec_webui.cli.main import main

    assert main(["serve", "--replicas", "2"]) == 2
    assert main(["serve", "--ray", "--autoscale", "2:1"]) == 2


def _health_app(settings, engine, replicas: ReplicaStatus | None):
    from fastapi import FastAPI

    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.serving import health, metrics

    class Replicated(Service):
        @property
        def replicas(self):
            return replicas

    service = Replicated(settings, engine)
    app = FastAPI()
    app.state.settings, app.state.service = settings, service
    app.include_router(health.router)
    metrics.install(app, service, settings)
    return app


def test_readyz_is_503_while_no_replica_runs(settings, engine):
    from fastapi.testclient import TestClient

    none = ReplicaStatus(0, {"STARTING": 2}, 2, 2, "UNHEALTHY", retried=3, lost=1)
    with TestClient(_health_app(settings, engine, none)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"]
        body = r.json()
        assert body["ready"] is False and body["state"] == "unavailable" and " / " in body["message"]
        assert body["replicas"]["running"] == 0 and body["replicas"]["states"] == {"STARTING": 2}
        text = c.get("/metrics").text
        assert 'e2v_model_replicas{state="running"} 0.0' in text and 'e2v_model_replicas{state="starting"} 2.0' in text
        assert "e2v_replica_retries_total 3.0" in text and "e2v_replica_lost_total 1.0" in text

    one = ReplicaStatus(1, {"RUNNING": 1, "STARTING": 1}, 1, 4, "UPSCALING")
    with TestClient(_health_app(settings, engine, one)) as c:
        body = c.get("/readyz").json()
        assert body["ready"] is True and body["replicas"]["min"] == 1 and body["replicas"]["max"] == 4


def test_one_process_readyz_has_no_replicas(settings, engine):
    from fastapi.testclient import TestClient

    with TestClient(_health_app(settings, engine, None)) as c:
        body = c.get("/readyz").json()
        assert body["ready"] is True and body["replicas"] is None
        assert "e2v_model_replicas" not in c.get("/metrics").text
