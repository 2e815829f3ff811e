"""What ``serve --ray`` is asked for: the ``--ray`` flags' values, checked once, with bilingual errors.

The command line (``cli/serve.py``) builds a :class:`RayServeOptions`; ``runs/inference/ray_service.py`` deploys from it.
"""

from __future__ import annotations

import dataclasses
import re

from emotion2vec_webui.errors import E2VError

APP_NAME = "emotion2vec-webui"  # the Serve application's default name (a second server with the same name replaces it)
MAX_REPLICAS = 256


@dataclasses.dataclass(frozen=True)
class RayServeOptions:
    """How ``serve --ray`` deploys the model (command-line flags)."""

    address: str | None = None  # a Ray cluster (``ray://`` or ``host:port``; None: RAY_ADDRESS, else a local one)
    replicas: int = 1  # a fixed number of replicas (unless ``autoscale``)
    autoscale: tuple[int, int] | None = None  # (min, max) replicas, scaled on requests in flight
    replica_cpus: float = 1.0  # CPUs reserved for each replica (also its torch threads on a CPU)
    app_name: str = APP_NAME  # the Serve application: servers with different names share a cluster side by side

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise E2VError(
                "bad_request", f"--replicas must be 1-{MAX_REPLICAS}. / --replicas 须在 1-{MAX_REPLICAS} 之间。"
            )
        if not 0 < self.replica_cpus <= 256:
            raise E2VError(
                "bad_request",
                "--replica-cpus must be above 0 and at most 256. / --replica-cpus 须大于 0 且不超过 256。",
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.app_name):
            raise E2VError("bad_request", "--app-name takes 1-64 letters, digits, '_', '.', '-'. "
                                          "/ --app-name 只能包含 1-64 个字母、数字、'_'、'.'、'-'。")  # fmt: skip
        if self.autoscale is not None:
            lo, hi = self.autoscale
            if not 0 <= lo <= hi <= MAX_REPLICAS or hi < 1:
                raise E2VError("bad_request", f"--autoscale MIN:MAX needs 0 <= MIN <= MAX <= {MAX_REPLICAS}, MAX >= 1. "
                                              f"/ --autoscale MIN:MAX 须满足 0 <= MIN <= MAX <= {MAX_REPLICAS} 且 MAX >= 1。")  # fmt: skip


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` → ``(MIN, MAX)``.

    Raises:
        E2VError: ``bad_request`` when it is not two whole numbers.
    """
    lo, sep, hi = str(text).strip().partition(":")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise E2VError("bad_request", f"--autoscale takes MIN:MAX, e.g. 1:4, not {str(text)[:20]!r}. "
                                      "/ --autoscale 的格式为 MIN:MAX,例如 1:4。")  # fmt: skip
    return int(lo), int(hi)
