"""``serve --ray``: the service with its model on Ray Serve replicas instead of in this process.

The ingress is this process and the same app as ``serve`` (every REST route, the
WebSocket stream, the UI): what differs is only where the model runs. A
:class:`RemoteService` is a :class:`service.Service` whose scheduler is a
:class:`RemoteScheduler`: it takes the same typed :class:`InferenceRequest` s
(the boundary of issue 28) and forwards each to the ``E2VModel`` deployment
(``runs/inference/ray_replica.py``), where every replica has one engine and its own
scheduler (batching, priorities, per-client shares). Decoding and URL fetching
stay here, in the guarded decoder pool; a replica only ever sees waveforms.

Ray Serve (not a hand-written actor pool) because it already does what this
needs: replicas placed across nodes with their CPUs/GPUs, routing to the least
loaded of two, autoscaling on requests in flight, health checks that replace a
replica, and rolling updates. Ray is imported only here and in the functions
that need it.

Failure: a replica that dies mid-request (``ActorDiedError``; Serve then routes
no more to it) has the request sent once more, to another replica; when that
fails too, the request gets ``model_unavailable`` (HTTP 503 with Retry-After),
never silence. The run folder is written here, after the model answered, so an
answer either is a complete run or no run at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future

import numpy as np

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError, ModelUnavailableError
from emotion2vec_webui.runs.inference.ray_options import RayServeOptions
from emotion2vec_webui.runs.inference.ray_replica import ModelReplica, ReplicaError, ReplicaInfo
from emotion2vec_webui.runs.inference.scheduler import BatchPolicy, InferenceRequest
from emotion2vec_webui.runs.inference.service import ModelStatus, Service

log = logging.getLogger(__name__)

DEPLOYMENT = "E2VModel"
TARGET_ONGOING = 4  # autoscaling: requests in flight per replica it aims for (a CPU replica batches up to 8)
MAX_ONGOING = 64  # requests one replica holds at once (its own scheduler queues, orders and batches them)
HEALTH_CHECK_S = 5.0
SHUTDOWN_WAIT_S = 20.0  # the longest wait for Serve to remove the replicas when the server stops
REPLICA_STATUS_TTL_S = 2.0  # /readyz and /metrics read the replica states at most this often
INSTALL_HINT = "pip install 'emotion2vec-webui[ray]'"
LOST_REPLICA = ("A model replica went away twice while answering this request (the deployment is restarting "
                "it); retry in a few seconds. / 模型副本在处理此请求时两次中断(正在重启),请几秒后重试。")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ReplicaStatus:
    """The model replicas as Ray Serve's controller reports them."""

    running: int  # healthy replicas that take requests
    states: dict[str, int]  # replicas per state (RUNNING, STARTING, RECOVERING, STOPPING …)
    min: int  # the replicas wanted: a fixed count (min == max) or the autoscaling range
    max: int
    status: str  # the deployment's status: HEALTHY, UPDATING, UPSCALING, UNHEALTHY …
    retried: int = 0  # requests sent again after their replica died (since this server started)
    lost: int = 0  # requests answered model_unavailable because a second replica died too


class RayBackend:
    """The Ray connection, the deployment, and the calls to its replicas (retried once when a replica dies)."""

    def __init__(self, settings: Settings, options: RayServeOptions) -> None:
        self.settings = settings
        self.options = options
        self._handle = None
        self.started_ray = False
        self._loop = asyncio.new_event_loop()  # the calls' loop: a request is a coroutine, not a thread
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2v-ray-calls", daemon=True)
        self._counts: tuple[float, ReplicaStatus | None] = (0.0, None)
        self._counts_lock = threading.Lock()
        self.retried = 0  # requests sent again after their replica died
        self.lost = 0  # requests answered model_unavailable after the second replica died too

    # -- deploying ------------------------------------------------------------------------------
    def deploy(self) -> ReplicaInfo:
        """Connect to Ray, deploy ``E2VModel`` (blocks until its replicas have loaded the model).

        Raises:
            E2VError: ``model_unavailable`` when Ray Serve is missing or the deployment failed.
        """
        serve, o = _import_serve(), self.options
        self.started_ray = _connect(serve, self.options.address)
        serve.start(proxy_location="Disabled")  # no Serve HTTP proxy: this process is the ingress
        log.info("deploying %s on Ray Serve: %s", DEPLOYMENT, self._scale_text())
        try:
            self._handle = serve.run(self.deployment().bind(self.settings), name=o.app_name, route_prefix=None)
        except Exception as exc:  # the replicas could not load the model (its log is in Ray's)
            raise ModelUnavailableError(f"Ray Serve could not start the model replicas: {type(exc).__name__}: "
                                        f"{str(exc)[:500]} / Ray Serve 无法启动模型副本。") from exc  # fmt: skip
        self._thread.start()
        replica = self._handle.describe.remote().result()
        log.info("model replicas ready: %s on %s (%s); first on %s", replica.info.name, replica.info.device,
                 replica.info.dtype, replica.host)  # fmt: skip
        return replica

    def deployment(self):
        """``ModelReplica`` as a Serve deployment: replicas (or autoscaling), CPUs and GPUs per replica."""
        from ray import serve

        o = self.options
        gpus = 1 if self._wants_gpu() else 0
        config: dict = {
            "name": DEPLOYMENT,
            "ray_actor_options": {"num_cpus": o.replica_cpus, "num_gpus": gpus},
            "max_ongoing_requests": MAX_ONGOING,
            "health_check_period_s": HEALTH_CHECK_S,
            "graceful_shutdown_timeout_s": 10,
        }
        if o.autoscale is not None:
            config["autoscaling_config"] = {"min_replicas": o.autoscale[0], "max_replicas": o.autoscale[1],
                                            "target_ongoing_requests": TARGET_ONGOING}  # fmt: skip
        else:
            config["num_replicas"] = o.replicas
        return serve.deployment(**config)(ModelReplica)

    def _wants_gpu(self) -> bool:
        device = str(self.settings.device)
        if device.startswith("cuda"):
            return True
        if device == "auto":
            import ray

            return ray.cluster_resources().get("GPU", 0) >= 1
        return False

    def _scale_text(self) -> str:
        o = self.options
        count = f"{o.autoscale[0]}-{o.autoscale[1]} replicas (autoscaling)" if o.autoscale else f"{o.replicas} replicas"
        return f"{count}, {o.replica_cpus:g} CPU each{', 1 GPU each' if self._wants_gpu() else ''}"

    def shutdown(self) -> None:
        """Remove the deployment (its replicas free their CPUs and GPUs); stop Ray when this process started it."""
        if self._handle is None and not self.started_ray:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        # serve.delete waits for the controller: a cluster already gone (its head stopped first) must not hold
        # the exit, so it gets SHUTDOWN_WAIT_S on a thread of its own
        remover = threading.Thread(target=self._remove_app, name="e2v-serve-delete", daemon=True)
        remover.start()
        remover.join(SHUTDOWN_WAIT_S)
        self._handle = None
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False

    def _remove_app(self) -> None:
        try:
            from ray import serve

            serve.delete(self.options.app_name)
        except Exception as exc:  # the cluster may already be gone
            log.warning("could not remove the Serve application: %s", exc)

    # -- calling --------------------------------------------------------------------------------
    def submit(self, method: str, *args) -> Future:
        """``E2VModel.<method>(*args)`` on a replica; the future gives its answer (see :meth:`call`)."""
        return asyncio.run_coroutine_threadsafe(self._call(method, *args), self._loop)

    async def _call(self, method: str, *args):
        from ray.exceptions import RayActorError, RayTaskError

        for attempt in (1, 2):
            try:
                answer = await getattr(self._handle, method).remote(*args)
            except RayTaskError as exc:  # raised by our code on the replica: the error itself
                cause = getattr(exc, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            except RayActorError as exc:  # the replica died (or is unreachable): Serve routes no more to it
                if attempt == 2:
                    self.lost += 1
                    log.error("%s: a second replica went away too (%s); answering model_unavailable", method, exc)
                    raise ModelUnavailableError(LOST_REPLICA) from exc
                self.retried += 1
                log.warning("%s: its replica went away (%s); sending it once more, to another replica",
                            method, type(exc).__name__)  # fmt: skip
                continue
            if isinstance(answer, ReplicaError):
                raise answer.error()
            return answer
        raise AssertionError("unreachable")

    def replica_status(self) -> ReplicaStatus | None:
        """The replicas' states (read from the controller at most every :data:`REPLICA_STATUS_TTL_S`)."""
        with self._counts_lock:
            at, counts = self._counts
            if counts is None or time.monotonic() - at >= REPLICA_STATUS_TTL_S:
                counts = self._read_counts()
                # "not deployed yet" is never kept: /readyz polled while the replicas load must not
                # hide them for the TTL once they are up
                self._counts = (time.monotonic(), counts)
        return None if counts is None else dataclasses.replace(counts, retried=self.retried, lost=self.lost)

    def _read_counts(self) -> ReplicaStatus | None:
        if self._handle is None:
            return None
        o = self.options
        lo, hi = o.autoscale if o.autoscale else (o.replicas, o.replicas)
        try:
            from ray import serve

            deployment = serve.status().applications[o.app_name].deployments[DEPLOYMENT]
        except Exception as exc:  # the controller is unreachable (the head node went away) or the app is gone
            log.warning("could not read the replicas' states: %s", exc)
            return ReplicaStatus(0, {}, lo, hi, "UNKNOWN", self.retried, self.lost)
        states = {str(getattr(k, "value", k)): int(v) for k, v in deployment.replica_states.items()}
        status = str(getattr(deployment.status, "value", deployment.status))
        return ReplicaStatus(states.get("RUNNING", 0), states, lo, hi, status, self.retried, self.lost)


def _import_serve():
    try:
        from ray import serve
    except ImportError as exc:
        raise ModelUnavailableError(f"serve --ray needs Ray Serve, which is not installed: {INSTALL_HINT} "
                                    f"/ serve --ray 需要 Ray Serve:{INSTALL_HINT}") from exc  # fmt: skip
    return serve


def _connect(serve, address: str | None) -> bool:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray instance; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = (address or os.environ.get("RAY_ADDRESS", "")).strip()
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, namespace="emotion2vec-webui")
        return False
    # Our own instance listens on loopback only: skip Ray's token auth (as `batch --engine ray` does).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    log.info("starting a local Ray instance")
    ray.init(include_dashboard=False, namespace="emotion2vec-webui")
    return True


class RemoteScheduler:
    """What :class:`Service` sees as its scheduler: :meth:`submit` forwards each typed request to a replica.

    The replicas' own schedulers batch and order; this one only counts what is in flight, for the
    ``E2V_MAX_QUEUE`` admission (a job's many requests count once, as with the local scheduler).
    """

    policy = BatchPolicy(reason="batched on each Ray Serve replica by its own scheduler")

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._inflight: collections.Counter = collections.Counter()  # job (or request) → its requests in flight
        self._job_ids = itertools.count(1)
        self.busy_since: float | None = None  # the replicas' workers are not visible from here
        self.stats = collections.Counter()  # requests, retried, lost

    def start(self) -> None:
        pass

    def stop(self) -> None:
        log.info("ray backend: %d requests, %d sent again after a replica died, %d lost (answered 503)",
                 self.stats["requests"], self.backend.retried, self.backend.lost)  # fmt: skip

    def submit(self, request: InferenceRequest, job: int | None = None) -> Future:
        """Forward one model call; its future gives an :class:`EmotionResult` (or the ``[T, D]`` features)."""
        key = job if job is not None else ("request", id(request))
        with self._lock:
            self._inflight[key] += 1
            self.stats["requests"] += 1
        future = self.backend.submit("infer", request)
        future.add_done_callback(lambda _f: self._release(key))
        return future

    def submit_call(self, fn, priority: str = "interactive", client: str = "", job: int | None = None):
        raise E2VError("bad_request", "serve --ray runs no code on the model replicas but typed requests. "
                                      "/ serve --ray 只向模型副本发送类型化的推理请求。")  # fmt: skip

    def _release(self, key) -> None:
        with self._lock:
            self._inflight[key] -= 1
            if self._inflight[key] <= 0:
                del self._inflight[key]

    @contextlib.contextmanager
    def job(self, priority: str = "interactive"):
        yield next(self._job_ids)

    @property
    def depth(self) -> int:
        """Jobs (and lone requests) with a model call in flight."""
        with self._lock:
            return len(self._inflight)


class RemoteEngine:
    """The model as the ingress sees it: what a replica loaded, and its classifier head (long audio's windows
    are stitched here, see ``engine/longform.py``, from features a replica computed). Model calls go through the
    service's :class:`RemoteScheduler`, never through this object."""

    batchable = False  # the ingress never pads: each replica batches
    exported = None

    def __init__(self, replica: ReplicaInfo, backend: RayBackend) -> None:
        self.info = replica.info
        self.head_only = replica.head_only
        self.labels = list(replica.labels)
        self._backend = backend

    def head_logits(self, features) -> np.ndarray:
        if not isinstance(features, np.ndarray):
            features = features.detach().float().cpu().numpy()
        return self._backend.submit("head_logits", np.ascontiguousarray(features, dtype=np.float32)).result()


class RemoteService(Service):
    """A :class:`Service` whose model runs on Ray Serve replicas (``serve --ray``)."""

    def __init__(self, settings: Settings, options: RayServeOptions) -> None:
        super().__init__(settings)
        self.backend = RayBackend(settings, options)
        self.scheduler = RemoteScheduler(self.backend)
        self._stopping = threading.Event()
        self._status = ModelStatus("loading", f"deploying the model {settings.model} on Ray Serve … "
                                              "/ 正在 Ray Serve 上部署模型 …")  # fmt: skip

    def _load(self) -> None:
        try:
            replica = self.backend.deploy()
        except E2VError as exc:
            log.error("model replicas unavailable: %s", exc.message)
            self._status = ModelStatus("unavailable", exc.message)
            return
        except Exception as exc:  # Ray itself failed (no cluster at the address …): the server still answers
            log.exception("Ray Serve failed")
            self._status = ModelStatus("unavailable", f"Ray Serve failed: {type(exc).__name__}: {str(exc)[:500]} "
                                                      "/ Ray Serve 出错。")  # fmt: skip
            return
        self._engine = RemoteEngine(replica, self.backend)
        self._status = ModelStatus("ready", "model replicas ready / 模型副本已就绪", replica.info)
        if self.backend.started_ray:
            # Ray starts its local processes with PR_SET_PDEATHSIG: they are killed when the *thread* that started
            # them ends (this loader thread), not the process; so it waits here until the server stops
            self._stopping.wait()

    def wait_ready(self, timeout: float | None = None) -> ModelStatus:
        """Block until the replicas are ready or unavailable (the loader thread may outlive that, see above)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._status.state == "loading" and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
        return self._status

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
        self.backend.shutdown()

    @property
    def replicas(self) -> ReplicaStatus | None:
        """The model replicas (None until deployed)."""
        return self.backend.replica_status()
