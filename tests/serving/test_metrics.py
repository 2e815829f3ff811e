"""Prometheus metrics and request ids: unit tests on a small app, then the whole app in-process."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError, OverloadedError
from emotion2vec_webui.runs.inference import status
from emotion2vec_webui.runs.inference.service import ModelStatus
from emotion2vec_webui.serving import metrics
from emotion2vec_webui.ui import system_tab as ui_system


def samples(text: str) -> dict[tuple, float]:
    """``{(name, sorted label items): value}`` of an exposition (parsing it is part of the test)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class FakeService:
    """What metrics read of a Service: observers, queue, settings, status, start time."""

    def __init__(self, state: str = "ready", info=None) -> None:
        self.observers: list = []
        self.queue_depth = 2
        self.settings = Settings(max_queue=4)
        self.status = ModelStatus(state, state, info)
        self.started_at = 1.0


def fake_service(state: str = "ready", info=None) -> FakeService:
    return FakeService(state, info)


def fake_outcome(processing_s: float = 0.5, duration_s: float = 2.0):
    result = {"processing_time_s": processing_s, "audio": {"duration_s": duration_s}}
    return SimpleNamespace(result=result, decode_s=0.01, inference_s=0.2, write_s=0.03)


@pytest.fixture
def small_app():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/api/v1/runs/{run_id}")
    def run(run_id: str):
        return JSONResponse({"error": {"code": "not_found", "message": run_id}}, status_code=404)

    @app.get("/ok")
    def ok():
        return {"fine": True}

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    return app


def test_requests_counted_by_route_template_and_status(small_app):
    from fastapi.testclient import TestClient

    service = fake_service()
    installed = metrics.install(small_app, service, SimpleNamespace(api_token=None))
    assert metrics.install(small_app, service) is installed  # idempotent
    client = TestClient(small_app, raise_server_exceptions=False)
    for run_id in ("outputs_1", "outputs_2", "x"):
        client.get(f"/api/v1/runs/{run_id}")
    client.get("/ok")
    client.get("/no/such/path")
    assert client.get("/boom").status_code == 500
    found = samples(client.get("/metrics").text)
    runs = "/api/v1/runs/{run_id}"
    assert value(found, "e2v_http_requests_total", endpoint=runs, method="GET", status="404") == 3
    assert value(found, "e2v_http_requests_total", endpoint="/ok", method="GET", status="200") == 1
    assert value(found, "e2v_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(found, "e2v_http_requests_total", endpoint="/boom", method="GET", status="500") == 1
    assert value(found, "e2v_errors_total", code="not_found", source="http") == 3
    assert value(found, "e2v_http_request_duration_seconds_count", endpoint=runs) == 3
    assert not any("outputs_1" in str(key) for key in found)  # raw paths never become labels
    assert value(found, "e2v_queue_depth") == 2 and value(found, "e2v_queue_capacity") == 4
    assert value(found, "e2v_model_state", e2v_model_state="ready") == 1
    assert value(found, "e2v_model_state", e2v_model_state="loading") == 0
    assert value(found, "e2v_process_resident_memory_bytes") > 0


def test_metrics_follow_the_api_token(small_app):
    from fastapi.testclient import TestClient

    metrics.install(small_app, None, SimpleNamespace(api_token="s3cret"))
    client = TestClient(small_app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    assert value(samples(ok.text), "e2v_errors_total", code="unauthorized", source="http") == 2


def test_each_app_has_its_own_registry():
    a, b = metrics.PrometheusMetrics(fake_service()), metrics.PrometheusMetrics(fake_service())
    a.observe_http("/x", "GET", 200, 0.1, None)
    assert value(samples(a.exposition().decode()), "e2v_http_requests_total", endpoint="/x", method="GET", status="200")
    assert not value(
        samples(b.exposition().decode()), "e2v_http_requests_total", endpoint="/x", method="GET", status="200"
    )


def test_recognitions_observed_by_stage_and_failures_by_code():
    service = fake_service()
    m = metrics.PrometheusMetrics(service)
    for observer in service.observers:
        observer(fake_outcome(0.5, 2.0))
        observer(fake_outcome(0.7, 3.0))
        observer(E2VError("audio_undecodable", "not audio"))
        observer(OverloadedError())
        observer(RuntimeError("bug"))
    m.observe_http("/api/v1/recognize", "POST", 503, 0.001, "overloaded")
    m.observe_http("/api/v1/recognize", "BREW", 415, 0.001, "audio_undecodable")
    found = samples(m.exposition().decode())
    assert value(found, "e2v_recognitions_total") == 2
    for stage in ("decode", "inference", "write"):
        assert value(found, "e2v_recognition_stage_seconds_count", stage=stage) == 2
    assert value(found, "e2v_recognition_stage_seconds_sum", stage="inference") == pytest.approx(0.4)
    assert value(found, "e2v_recognition_stage_seconds_sum", stage="wait") == pytest.approx(1.2 - 0.4 - 0.02)
    assert value(found, "e2v_recognition_seconds_sum") == pytest.approx(1.2)
    assert value(found, "e2v_audio_seconds_total") == pytest.approx(5.0)
    assert value(found, "e2v_errors_total", code="audio_undecodable", source="service") == 1
    assert value(found, "e2v_errors_total", code="audio_undecodable", source="http") == 1
    assert value(found, "e2v_errors_total", code="internal_error", source="service") == 1
    assert value(found, "e2v_rejections_total") == 2
    assert value(found, "e2v_http_requests_total", endpoint="/api/v1/recognize", method="OTHER", status="415") == 1


def test_route_label_and_error_code_helpers():
    from starlette.routing import Mount, Route

    route = Route("/api/v1/runs/{run_id}/{artifact}", lambda r: None)
    assert metrics.route_label({"route": route}) == "/api/v1/runs/{run_id}/{artifact}"
    assert metrics.route_label({"route": Mount("/ui", app=lambda *a: None)}) == "/ui/{path}"
    assert metrics.route_label({}) == "unmatched"
    # Answered by a middleware before any router ran (401, 413): named by matching the app's routes.
    scope = {"type": "http", "path": "/api/v1/runs/outputs_1/result.json", "method": "GET"}
    templates = metrics.compile_templates(["/healthz", route.path_format])
    assert metrics.route_label(scope, templates) == route.path_format
    assert metrics.route_label({**scope, "path": "/elsewhere"}, templates) == "unmatched"
    assert metrics.error_code_of(b'{"error": {"code": "file_too_large", "message": "x"}}') == "file_too_large"
    assert metrics.error_code_of(b'{"error": {"code": "made_up"}}') is None
    assert metrics.error_code_of(b"<html>") is None


def test_recent_runs_percentiles_and_system_tab_text():
    service = fake_service()
    stats = status.recent_runs(service)
    assert status.recent_runs(service) is stats and service.observers == [stats]
    assert stats.latency() == (0, None, None)
    for t in range(1, 101):
        stats(fake_outcome(t / 100))
    stats(E2VError("audio_empty", "empty"))
    assert stats.served == 100
    assert stats.latency() == (100, 0.5, 0.95)
    snapshot = status.resources(service)
    assert snapshot["served"] == 100 and snapshot["queue_depth"] == 2 and snapshot["rss_bytes"] > 0
    html = ui_system.resources_html(service)
    assert "500 ms / 950 ms" in html and "2 / 4" in html
    info = ui_system.info_html(service)
    assert "<td>ready</td>" in info and "E2V_MAX_UPLOAD_MB" in info and "100 MB" in info


# -- the whole app in-process: a known sequence of requests ----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, engine):
    """The app (JSON logs, small upload cap) after 3 ok, 2 audio_undecodable and 1 file_too_large.

    ``create_app`` in-process through FastAPI's TestClient: the middleware and routes a server runs,
    without uvicorn (not under test here). Logging is set up as ``serve --log-format json`` sets it: JSON
    lines on the terminal stream (captured in ``out``) and in ``logs/server.log``; restored afterwards.
    """
    import dataclasses
    import io
    import logging

    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.logs import log_to_file, setup_logging
    from emotion2vec_webui.runs.inference.service import Service

    root = tmp_path_factory.mktemp("metrics_app")
    wav = write_audio(root / "tone.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    not_audio = base64.b64encode(b"RIFF" + os.urandom(30_000)).decode()
    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=root / "outputs",
                            log_dir=root / "logs", log_format="json", max_upload_mb=0.1, api_token=None)  # fmt: skip
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    out = io.StringIO()
    try:
        setup_logging("INFO", "json", stream=out)
        log_to_file(s.log_dir)
        with TestClient(create_app(s, Service(s, engine)), base_url="http://127.0.0.1") as client:
            url = "/api/v1/recognize"
            ok = [client.post(url, files={"file": ("tone.wav", wav, "audio/wav")}) for _ in range(3)]
            bad = [
                client.post(url, json={"audio_base64": not_audio, "filename": "a.wav"}),
                client.post(url, files={"file": ("b.wav", not_audio[:20_000].encode(), "audio/wav")}),
            ]
            big = client.post(url, files={"file": ("big.wav", b"\0" * 300_000, "audio/wav")})
            scrape = client.get("/metrics")
    finally:
        for h in list(logger.handlers):
            if h not in handlers:
                logger.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in logger.handlers:
                logger.addHandler(h)
        logger.setLevel(level)
    (root / "server.out").write_text(out.getvalue(), "utf-8")
    yield SimpleNamespace(ok=ok, bad=bad, big=big, scrape=scrape, root=root, payload=not_audio, out=root / "server.out")


def test_counters_after_a_known_sequence(served):
    assert [r.status_code for r in served.ok] == [200, 200, 200]
    assert [r.json()["error"]["code"] for r in served.bad] == ["audio_undecodable"] * 2
    assert served.big.json()["error"]["code"] == "file_too_large"
    assert served.scrape.status_code == 200
    found = samples(served.scrape.text)
    route = "/api/v1/recognize"
    assert value(found, "e2v_http_requests_total", endpoint=route, method="POST", status="200") == 3
    assert (
        value(found, "e2v_http_requests_total", endpoint=route, method="POST", status=str(served.bad[0].status_code))
        == 2
    )
    assert value(found, "e2v_http_requests_total", endpoint=route, method="POST", status="413") == 1
    assert value(found, "e2v_errors_total", code="audio_undecodable", source="http") == 2
    assert value(found, "e2v_errors_total", code="file_too_large", source="http") == 1
    assert value(found, "e2v_recognitions_total") == 3
    assert value(found, "e2v_recognition_stage_seconds_count", stage="inference") == 3
    assert value(found, "e2v_audio_seconds_total") == pytest.approx(3.0, abs=0.01)
    assert value(found, "e2v_rejections_total") == 0
    assert value(found, "e2v_model_state", e2v_model_state="ready") == 1
    assert value(found, "e2v_model_load_seconds") > 0
    assert value(found, "e2v_process_resident_memory_bytes") > 0


def test_request_ids_match_headers_results_and_log_lines(served):
    log_file = served.root / "logs" / "server.log"
    entries = [json.loads(line) for line in log_file.read_text("utf-8").splitlines()]  # every line parses
    for response in served.ok:
        request_id = response.headers["x-request-id"]
        assert response.json()["request_id"] == request_id
        run_dir = Path(served.root / "outputs" / response.json()["run_id"])
        assert json.loads((run_dir / "result.json").read_text("utf-8"))["request_id"] == request_id
        assert request_id in (run_dir / "run.log").read_text("utf-8")
        # the pipeline's lines, logged on the inference worker thread, carry the id too
        pipeline = [e for e in entries if e["logger"].endswith(".runs.recognize") and e.get("request_id") == request_id]
        assert any(e["message"].startswith("inference:") for e in pipeline)
    for response in [*served.bad, served.big]:
        request_id, code = response.headers["x-request-id"], response.json()["error"]["code"]
        mine = [e["message"] for e in entries if e.get("request_id") == request_id]
        assert any(f"answered {response.status_code} {code}" in m for m in mine), mine


def test_no_audio_payload_in_any_log(served):
    texts = [p.read_text("utf-8", errors="replace") for p in (served.root / "logs").iterdir()]
    texts.append(served.out.read_text("utf-8", errors="replace"))
    for text in texts:
        for start in (100, 5000, 20_000):
            assert served.payload[start : start + 48] not in text
