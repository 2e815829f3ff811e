"""One model replica of ``serve --ray``: the class Ray Serve runs as the ``E2VModel`` deployment.

Each replica is a Ray actor that loads one :class:`engine.EmotionEngine` and puts
the serving scheduler of ``runs/inference/scheduler.py`` in front of it, exactly as the
single-process server does: typed :class:`InferenceRequest` s in, length-bucketed
padded batches on the one inference worker, priorities (live, interactive,
background) and per-client shares. We use that scheduler rather than
``@serve.batch`` because ``@serve.batch`` groups by arrival only: it knows
nothing of priorities, of stale live windows or of padding budgets, and the
numbers would then differ from the single-process server's.

A replica never sees a file, a URL or an HTTP request: the ingress
(``runs/inference/ray_service.py``) decodes in its guarded decoder pool and sends the
waveform. What goes back must unpickle on a machine without the replica's
device, so features leave as numpy arrays, never CUDA tensors. An
:class:`~errors.E2VError` leaves as :class:`ReplicaError` (code and message),
since its constructor's arguments do not survive pickling.

Ray is not imported here: the class is plain; ``ray_service.deployment``
wraps it with ``serve.deployment`` on the ingress side.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.config import Settings
from emotion2vec_webui.engine.result import EmotionResult
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.model.resolve import ModelInfo
from emotion2vec_webui.runs.inference.scheduler import InferenceRequest, Scheduler, policy_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaInfo:
    """What the ingress needs to know of the model a replica loaded."""

    info: ModelInfo  # the loaded model (name, device, dtype …), as the single-process server reports it
    head_only: bool  # no nine-class head: recognition needs a trained head
    labels: tuple[str, ...]  # the model's token order
    host: str  # where the replica runs (logs, the System tab)
    pid: int


@dataclass(frozen=True)
class ReplicaError:
    """An :class:`~errors.E2VError` raised on a replica, sent back as data (code, message)."""

    code: str
    message: str

    def error(self) -> E2VError:
        return E2VError(self.code, self.message)


class ModelReplica:
    """The ``E2VModel`` deployment: one engine, its scheduler, and the calls the ingress makes.

    Args:
        settings: the ingress' settings (model, hub, device, precision, ``E2V_BATCH_*``); the model path must
            exist on every node that runs a replica.
    """

    def __init__(self, settings: Settings) -> None:
        from emotion2vec_webui.engine.engine import EmotionEngine
        from emotion2vec_webui.model.resolve import quiet_funasr

        with quiet_funasr():
            self.engine = EmotionEngine.from_settings(settings)
        self.scheduler = Scheduler(lambda: self.engine, policy_for(self.engine, settings))
        self.scheduler.start()
        log.info("replica ready on %s (pid %d): %s on %s; batching: %s", socket.gethostname(), os.getpid(),
                 self.engine.info.name, self.engine.info.device, self.scheduler.policy.reason)  # fmt: skip

    def describe(self) -> ReplicaInfo:
        engine = self.engine
        return ReplicaInfo(engine.info, bool(engine.head_only), tuple(engine.labels), socket.gethostname(), os.getpid())

    async def infer(self, request: InferenceRequest) -> EmotionResult | np.ndarray | ReplicaError:
        """One typed model call through this replica's scheduler: the result, or the ``[T, D]`` features."""
        try:
            answer = await asyncio.wrap_future(self.scheduler.submit(request))
        except E2VError as exc:
            return ReplicaError(exc.code, exc.message)
        return answer if isinstance(answer, EmotionResult) else _numpy(answer)

    async def head_logits(self, features: np.ndarray) -> np.ndarray:
        """The classifier head on features ``[..., D]`` (long audio's windows are stitched on the ingress)."""

        def head(engine):
            import torch

            if engine.exported is not None:
                return engine.head_logits(features)
            return engine.head_logits(torch.from_numpy(features).to(engine.info.device))

        return _numpy(await asyncio.wrap_future(self.scheduler.submit_call(head)))

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose inference worker died is replaced."""
        thread = self.scheduler._thread
        if thread is None or not thread.is_alive():
            raise RuntimeError("the inference worker is not running")

    def __del__(self) -> None:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            scheduler.stop()


def _numpy(x) -> np.ndarray:
    """A float32 numpy array of a tensor (any device) or an array."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False)
    return x.detach().float().cpu().numpy()
