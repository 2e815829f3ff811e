"""train-head twice on the same 60 clips: the second run reuses the cached features (no inference, no model load).

Generates 60 clips (20 speech via espeak-ng, 20 tones, 20 noise; tests/head_data.py), builds a tiny
random-weight model, runs ``emotion2vec-webui train-head DATA --name … --json`` as a user would (a fresh
process each time), then again with ``--force``, and prints both wall times, their ratio (target < 0.2),
the cross-validated and held-out accuracy, and the second run's log line about the cache.

    python benchmarks/train_head_cache.py [--per-class 20] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.head_data import make_set  # noqa: E402


def train(data: Path, heads: Path, model: str, force: bool) -> tuple[float, dict, str]:
    cmd = [sys.executable, "-m", "emotion2vec_webui", "train-head", str(data), "--name", "bench", "--json",
           "--heads-dir", str(heads), "--model", model, "--device", "cpu"] + (["--force"] if force else [])  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env={**os.environ})
    elapsed = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr)
    report = json.loads([line for line in p.stdout.splitlines() if line.startswith("{")][-1])
    return elapsed, report, p.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--model", help="a model directory (default: a fresh tiny random-weight model)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="e2v-heads-bench-"))
    data = make_set(root / "data", args.per_class)
    model = args.model
    if not model:
        from emotion2vec_webui.model.standins import make_test_model

        model = str(make_test_model(root / "tiny", "tiny", seed=0))
    first_s, first, _ = train(data, root / "heads", model, force=False)
    second_s, second, log = train(data, root / "heads", model, force=True)
    cache_line = next((line for line in log.splitlines() if "from the cache" in line), "(no cache line)")
    print(f"clips: {first['n']}  labels: {', '.join(first['labels'])}  model: {first['model']}")
    print(f"first run:  {first_s:6.1f} s  (features extracted {first['features']['extracted']}, "
          f"{first['features']['seconds']:.1f} s)")  # fmt: skip
    print(f"second run: {second_s:6.1f} s  (features extracted {second['features']['extracted']}, "
          f"cached {second['features']['cached']})")  # fmt: skip
    print(f"ratio second/first: {second_s / first_s:.3f}  (target < 0.2)")
    print(f"cv accuracy {first['cv_accuracy']:.3f}, cv macro F1 {first['cv_f1_macro']:.3f}, "
          f"held-out accuracy {first['holdout_accuracy']:.3f}, classifier {first['classifier']}")  # fmt: skip
    print(f"second run's log: {cache_line.strip()}")


if __name__ == "__main__":
    main()
