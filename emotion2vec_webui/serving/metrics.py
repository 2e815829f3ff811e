"""Prometheus metrics (``GET /metrics``) and the live figures of the UI's system tab.

:func:`install` gives one app its own :class:`~prometheus_client.CollectorRegistry`
(tests run several apps in one process), an ASGI middleware that counts
requests by route template and status, and an observer on the service that
times every recognition by stage. Figures that are cheap to read at scrape
time (queue depth, model state, memory) are read then, not kept up to date.

Every failure is counted once in ``e2v_errors_total{code, source}``:

- ``source="http"``: error responses of the HTTP API, by the code in their
  body, counted where the response leaves the server (so a ``file_too_large``
  cut off while the body streams in, or a 401, counts too);
- ``source="service"``: failures of :meth:`Service.recognize`, the in-process
  path of the web UI (its errors never become HTTP error bodies).
"""

from __future__ import annotations

import json
import logging
import time

from emotion2vec_webui.errors import ERROR_CODES
from emotion2vec_webui.runs.inference.status import _process, gpu_memory, outcome_of, register_counters, versions

log = logging.getLogger(__name__)

# Latency buckets (seconds): a 1 s clip on a GPU up to a 10-minute file on a CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL_STATES = ("loading", "ready", "unavailable")
STAGES = ("decode", "wait", "inference", "write")  # label values of e2v_recognition_stage_seconds
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# -- label helpers -----------------------------------------------------------------


def route_label(scope: dict, templates=()) -> str:
    """The route template of a request (``/api/v1/runs/{run_id}``), never the raw path.

    Raw paths would make one time series per run id or file name.

    Args:
        scope: the ASGI scope, after the app handled it.
        templates: ``(compiled regex, template)`` pairs (:func:`compile_templates`), tried when no
            router saw the request because a middleware answered first (401, 413).
    """
    # Starlette's router sets scope["route"]; a mounted app's own router overwrites it with its route.
    # A Mount that answers by itself reads as ``/mount/{path}``.
    template = getattr(scope.get("route"), "path_format", None)
    if template is None:
        path = scope.get("path", "")
        template = next((t for regex, t in templates if regex.match(path)), None)
    return template or "unmatched"


def compile_templates(paths) -> list:
    """``(regex, template)`` for route templates such as ``/api/v1/runs/{run_id}``."""
    from starlette.routing import compile_path

    return [(compile_path(p)[0], p) for p in paths]


def api_error_of(body: bytes) -> tuple[str, str] | None:
    """``(code, message)`` of a JSON error body, when the code is one of ours."""
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (code, message) if code in ERROR_CODES else None


def error_code_of(body: bytes) -> str | None:
    """The ``error.code`` of a JSON error body, when it is one of ours."""
    error = api_error_of(body)
    return error[0] if error else None


def counter_total(counter) -> float:
    """Sum of a prometheus counter over all its labels."""
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


# -- Prometheus ---------------------------------------------------------------------


class _LiveCollector:
    """Figures read at scrape time: queue, model state and info, process and GPU memory."""

    def __init__(self, service) -> None:
        self.service = service

    def describe(self):
        return []  # names are fixed; skips calling collect() at registration

    def collect(self):
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
            StateSetMetricFamily,
        )

        service = self.service
        yield GaugeMetricFamily(
            "e2v_queue_depth", "Recognitions waiting for the inference worker.", service.queue_depth
        )
        yield GaugeMetricFamily(
            "e2v_queue_capacity",
            "Waiting recognitions beyond which requests get 503 (E2V_MAX_QUEUE).",
            service.settings.max_queue,
        )
        status = service.status
        yield StateSetMetricFamily(
            "e2v_model_state",
            "Model state: loading, ready or unavailable.",
            {state: status.state == state for state in MODEL_STATES},
        )
        if status.info is not None:
            info = status.info
            yield GaugeMetricFamily(
                "e2v_model_load_seconds", "Seconds the model took to load and warm up.", info.load_s
            )
            yield GaugeMetricFamily("e2v_model_parameters", "Parameters of the loaded model.", info.num_parameters)
            yield InfoMetricFamily(
                "e2v_model",
                "The loaded model.",
                {
                    "name": info.name,
                    "hub": info.hub,
                    "hub_id": info.hub_id or "",
                    "device": info.device,
                    "dtype": info.dtype,
                    "random_weights": str(info.random_weights).lower(),
                },
            )
        replicas = getattr(service, "replicas", None)  # serve --ray: the model replicas, from Serve's controller
        if replicas is not None:
            family = GaugeMetricFamily("e2v_model_replicas", "Model replicas (serve --ray) by state.", labels=["state"])
            for state, n in sorted({"RUNNING": 0, **replicas.states}.items()):
                family.add_metric([state.lower()], n)
            yield family
            yield GaugeMetricFamily("e2v_model_replicas_min", "Model replicas wanted, at least.", replicas.min)
            yield GaugeMetricFamily("e2v_model_replicas_max", "Model replicas wanted, at most.", replicas.max)
            yield CounterMetricFamily("e2v_replica_retries", "Requests sent again after their replica died.",
                                      replicas.retried)  # fmt: skip
            yield CounterMetricFamily("e2v_replica_lost", "Requests answered 503 after a second replica died too.",
                                      replicas.lost)  # fmt: skip
        yield InfoMetricFamily("e2v_build", "Versions of the app and its main libraries.", versions())
        yield GaugeMetricFamily("e2v_process_start_time_seconds", "Unix time the service started.", service.started_at)
        proc = _process()
        with proc.oneshot():
            cpu = proc.cpu_times()
            yield GaugeMetricFamily("e2v_process_resident_memory_bytes", "Resident set size.", proc.memory_info().rss)
            yield CounterMetricFamily("e2v_process_cpu_seconds", "CPU time (user + system).", cpu.user + cpu.system)
            yield GaugeMetricFamily("e2v_process_threads", "Threads of the server process.", proc.num_threads())
        gpus = gpu_memory()
        if gpus:
            for key, help_text in (
                ("allocated", "GPU memory held by tensors."),
                ("reserved", "GPU memory reserved by the caching allocator."),
                ("peak", "Peak GPU memory held by tensors since start."),
            ):
                family = GaugeMetricFamily(f"e2v_gpu_memory_{key}_bytes", help_text, labels=["device"])
                for gpu in gpus:
                    family.add_metric([gpu["device"]], gpu[key])
                yield family


class PrometheusMetrics:
    """The metrics of one app, in a registry of their own.

    Args:
        service: the service whose queue, model and recognitions are measured (None: HTTP metrics only).
    """

    def __init__(self, service=None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: they double the output for no use here
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "e2v_http_requests",
            "HTTP requests by route template, method and status.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "e2v_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "e2v_errors",
            "Failures by error code; source: http (API error responses) or service (web UI recognitions).",
            ["code", "source"],
            registry=r,
        )
        self.rejections = Counter(
            "e2v_rejections", "Recognitions refused with 503 because the queue was full.", registry=r
        )
        self.recognitions = Counter(
            "e2v_recognitions", "Recognitions completed by the inference worker (UI and API).", registry=r
        )
        self.stage_latency = Histogram(
            "e2v_recognition_stage_seconds",
            "Seconds per recognition stage: decode (with resampling), wait (queue wait and post-processing), "
            "inference, write (run folder).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.recognition_latency = Histogram(
            "e2v_recognition_seconds",
            "Processing time of a recognition, decode to result (result.json's processing_time_s).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter("e2v_audio_seconds", "Seconds of audio recognised.", registry=r)
        for stage in STAGES:
            self.stage_latency.labels(stage)  # present (at 0) before the first run
        if service is not None:
            r.register(_LiveCollector(service))
            service.observers.append(self.observe_recognition)
            register_counters(service, lambda: (counter_total(self.errors), counter_total(self.rejections)))

    def observe_recognition(self, event) -> None:
        """Service observer: a RunOutcome, or the exception :meth:`Service.recognize` raised."""
        outcome = outcome_of(event)
        if outcome != "ok":
            self.count_error(outcome, "service")
            return
        self.recognitions.inc()
        self.stage_latency.labels("decode").observe(event.decode_s)
        self.stage_latency.labels("inference").observe(event.inference_s)
        self.stage_latency.labels("write").observe(event.write_s)
        processing_s = float(event.result.get("processing_time_s", 0.0))  # decode start → result, before write
        self.stage_latency.labels("wait").observe(max(0.0, processing_s - event.decode_s - event.inference_s))
        self.recognition_latency.observe(processing_s)
        self.audio_seconds.inc(float(event.result.get("audio", {}).get("duration_s", 0.0)))

    def observe_http(self, endpoint: str, method: str, status: int, seconds: float, code: str | None) -> None:
        method = method if method in _METHODS else "OTHER"
        self.http_requests.labels(endpoint, method, str(status)).inc()
        self.http_latency.labels(endpoint).observe(seconds)
        if code:
            self.count_error(code, "http")

    def count_error(self, code: str, source: str) -> None:
        self.errors.labels(code, source).inc()
        if code == "overloaded":
            self.rejections.inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request, reads the code of error bodies.

    It also writes one log line per API error response (code and message,
    with the request id), so failed requests can be found in the logs. It
    should sit outermost, so that answers given by other middleware (401,
    413, 500) are counted too.
    """

    _BODY_CAP = 8192  # error bodies are small; never buffer more than this

    def __init__(self, app, metrics: PrometheusMetrics, route_templates=None) -> None:
        self.app = app
        self.metrics = metrics
        self._route_templates = route_templates  # () -> the app's path templates (its OpenAPI paths)
        self._templates: list | None = None

    def templates(self) -> list:
        """Compiled route templates, built on first need (the routes are complete by then)."""
        if self._templates is None:
            self._templates = compile_templates(self._route_templates() if self._route_templates else ())
        return self._templates

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        capture = False
        body = bytearray()
        request_id = None

        async def observing_send(message) -> None:
            nonlocal status, capture, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", ()))
                capture = status >= 400 and b"json" in headers.get(b"content-type", b"")
                request_id = headers.get(b"x-request-id", b"").decode("latin-1") or None
            elif message["type"] == "http.response.body" and capture and len(body) < self._BODY_CAP:
                body.extend(message.get("body", b"")[: self._BODY_CAP - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            try:
                endpoint = route_label(scope) if "route" in scope else route_label(scope, self.templates())
                error = api_error_of(bytes(body)) if capture else None
                method = scope.get("method", "")
                self.metrics.observe_http(
                    endpoint, method, status, time.perf_counter() - started, error[0] if error else None
                )
                if error:
                    level = logging.WARNING if status >= 500 else logging.INFO
                    extra = {"request_id": request_id} if request_id else None
                    log.log(level, "%s %s answered %d %s: %s", method, scope.get("path"), status, *error, extra=extra)
            except Exception:  # counting must never break a request
                log.exception("metrics: could not record %s %s", scope.get("method"), scope.get("path"))


def install(app, service=None, settings=None) -> PrometheusMetrics:
    """Add ``GET /metrics`` and the request-counting middleware to a FastAPI app.

    Call it before the app serves its first request (middleware cannot be
    added later); call it after the other middleware to count their answers.

    Args:
        app: the FastAPI app.
        service: the service to observe (default ``app.state.service``).
        settings: for ``E2V_API_TOKEN`` (default ``app.state.settings``); when a
            token is set, ``/metrics`` needs ``Authorization: Bearer <token>``.

    Returns:
        The app's :class:`PrometheusMetrics` (also ``app.state.metrics``).
    """
    import hmac

    from fastapi import Header
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST

    existing = getattr(app.state, "metrics", None)
    if existing is not None:
        return existing
    service = service if service is not None else getattr(app.state, "service", None)
    settings = settings if settings is not None else getattr(app.state, "settings", None)
    token = getattr(settings, "api_token", None)
    metrics = PrometheusMetrics(service)
    app.state.metrics = metrics

    def get_metrics(authorization: str | None = Header(default=None, include_in_schema=False)):
        if token:
            scheme, _, given = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return JSONResponse(
                    {"error": {"code": "unauthorized", "message": ERROR_CODES["unauthorized"]}},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/metrics",
        get_metrics,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics (text format)",
        response_class=Response,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_templates=lambda: list(app.openapi()["paths"]))
    return metrics
