"""The engine's own speed at several commits, side by side in one run: did a change make it slower?

``engine_vs_funasr.py`` judges the engine against FunASR's ``generate()``, whose
times swing by ±20% between runs on a shared 2-core VM, so a ratio that moves
there says little about our code. This script answers the narrower question a
refactor raises: with the same model, clips and machine, is the engine at
commit B slower than at commit A? Each commit is checked out into a temporary
``git worktree`` and imported from there (``PYTHONPATH``) in a fresh process per
commit and precision; commits take turns in rounds, the second round in
reverse order, so a drift in the machine's speed hits every commit alike.

    E2V_MODEL=/tmp/m_large python benchmarks/engine_speed_across_commits.py ec065fa HEAD --modes int8 fp32

prints, per commit, precision and clip length, the min and median seconds per
``engine.recognize`` call over all rounds, and each commit's median against the
first commit's. Inputs are seeded noise of 3, 10 and 30 s: the encoder's work
depends on the length only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LENGTHS = {3: 8, 10: 5, 30: 3}  # seconds -> timed calls per process

WORKER = """
import json, sys, time
import numpy as np
try:
    from emotion2vec_webui.engine.engine import EmotionEngine  # the layout since the architecture issue
except ImportError:
    from emotion2vec_webui.engine import EmotionEngine  # the flat layout before it
engine = EmotionEngine.load(sys.argv[1], device="cpu", precision=sys.argv[2])
lengths = json.loads(sys.argv[3])
rng = np.random.default_rng(0)
out = {}
for secs, calls in lengths.items():
    x = (rng.standard_normal(int(secs) * 16000) * 0.1).astype(np.float32)
    engine.recognize(x, "utterance", extract_embedding=True)  # untimed: warm
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        engine.recognize(x, "utterance", extract_embedding=True)
        times.append(time.perf_counter() - t)
    out[secs] = times
print(json.dumps(out))
"""


def checkout(commit: str, into: Path) -> Path:
    """A detached worktree of ``commit`` under ``into`` (removed by :func:`remove`)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit], check=True, capture_output=True, text=True)
    path = into / sha.stdout.strip()[:12]
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True, capture_output=True
    )
    return path


def remove(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)


def timed(tree: Path, model: str, mode: str) -> dict[int, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, model, mode, json.dumps(LENGTHS)],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commits", nargs="+", help="commits to compare; the first is the reference")
    parser.add_argument("--modes", nargs="+", default=["int8", "fp32"], help="precisions (engine --precision)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = os.environ.get("E2V_MODEL")
    if not model:
        sys.exit("set E2V_MODEL to a model directory (e.g. emotion2vec-webui make-test-model /tmp/m --size large)")
    times: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="e2v-commits-") as tmp:
        trees = {c: checkout(c, Path(tmp)) for c in args.commits}
        try:
            for r in range(args.rounds):
                order = args.commits if r % 2 == 0 else args.commits[::-1]
                for commit in order:
                    for mode in args.modes:
                        print(f"round {r + 1}: {commit} {mode} …", file=sys.stderr, flush=True)
                        for secs, ts in timed(trees[commit], model, mode).items():
                            times.setdefault((commit, mode, secs), []).extend(ts)
        finally:
            for tree in trees.values():
                remove(tree)
    print(f"| commit | mode | {' | '.join(f'{s} s min / p50' for s in LENGTHS)} | p50 vs {args.commits[0]} |")
    print(f"|---|---|{'---|' * len(LENGTHS)}---|")
    for mode in args.modes:
        for commit in args.commits:
            cells, ratios = [], []
            for secs in LENGTHS:
                ts = times[(commit, mode, secs)]
                ref = statistics.median(times[(args.commits[0], mode, secs)])
                cells.append(f"{min(ts):.3f} / {statistics.median(ts):.3f}")
                ratios.append(f"{statistics.median(ts) / ref:.2f}x")
            print(f"| {commit} | {mode} | {' | '.join(cells)} | {', '.join(ratios)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
