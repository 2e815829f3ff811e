"""Hand-built run folders for the catalog's tests (issue 30): single runs, batches, conversations.

Each run is written the way the product writes one — ``storage.write_run`` (the atomic rename),
then the catalog row (``record_run_folder``) unless asked not to — with a result.json that has the
fields the catalog reads. Times are ``T0 + i`` seconds, so the listing order is known.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.catalog.folders import BATCH_MANIFEST, batch_run_id
from emotion2vec_webui.runs.catalog.run_index import record_batch_folder, record_run_folder
from emotion2vec_webui.runs.storage import write_run

T0 = datetime(2026, 12, 1, 10, 0, 0).astimezone()


def result(i: int, name: str, emotion: str | None = None, **extra) -> dict:
    """A result.json object: run ``i`` (odd: happy, even: sad unless ``emotion``), confidence 0.1 + i/100."""
    emotion = emotion or ("happy" if i % 2 else "sad")
    scores = {k: 0.0 for k in EMOTIONS} | {emotion: 1.0}
    return {"emotion": emotion, "emotion_zh": "", "confidence": round(0.1 + 0.01 * i, 3), "scores": scores,
            "granularity": "utterance", "timestamp": (T0 + timedelta(seconds=i)).isoformat(), "request_id": f"req{i}",
            "audio": {"source_name": name, "duration_s": 1.0 + i}, "model": {"random_weights": True}, **extra}  # fmt: skip


def write_single(root: Path, i: int, name: str, record: bool = True, **extra) -> str:
    """Write run ``i`` under ``root`` (a batch folder too); its run id (``outputs_…``, the folder name)."""
    res = result(i, name, **extra)
    run = write_run(root, res, np.zeros(1600, np.float32), None, "log\n", T0 + timedelta(seconds=i))
    if record:
        record_run_folder(run.path, res)
    return run.run_id


def make_batch(root: Path, name: str, start: int, files: list[str], labels: list[str] | None = None,
               done: bool = True, **extra) -> list[str]:  # fmt: skip
    """A batch folder with one run per file (times ``start``, ``start + 1`` …), its summary, and when labelled
    its metrics.json; ``done`` writes report.txt (a finished batch). Returns the runs' ids, oldest first."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / BATCH_MANIFEST).write_text(json.dumps({"input": f"/data/{name}", "granularity": "utterance"}))
    ids, rows = [], []
    for k, file in enumerate(files):
        run = write_single(folder, start + k, file, **extra)
        ids.append(batch_run_id(name, run))
        label = labels[k] if labels else None
        res = json.loads((folder / run / "result.json").read_text())
        rows.append({"file": file, "input": f"/data/{file}", "label": label, "status": "ok", "emotion": res["emotion"],
                     "confidence": res["confidence"], "run_folder": run})  # fmt: skip
    (folder / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if labels:
        present = [e for e in EMOTIONS if e in set(labels) | {r["emotion"] for r in rows}]
        matrix = [[sum(r["label"] == a and r["emotion"] == b for r in rows) for b in present] for a in present]
        right = sum(r["label"] == r["emotion"] for r in rows)
        metrics = {"count": len(rows), "accuracy": right / len(rows), "weighted_f1": 0.5, "macro_f1": 0.5,
                   "labels": present, "confusion": matrix, "per_class": []}  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if done:
        (folder / "report.txt").write_text("done\n")
        record_batch_folder(folder)
    return ids


def conversation(n_turns: int = 5) -> dict:
    """``speakers`` and ``turns`` of a two-channel call (left: happy, right: angry)."""
    scores = {k: 0.0 for k in EMOTIONS}
    turns = [{"index": i, "speaker": "left" if i % 2 == 0 else "right", "start_s": float(i), "end_s": i + 0.9,
              "emotion": "angry" if i % 2 else "happy", "emotion_zh": "", "confidence": 0.7,
              "scores": scores | {"angry" if i % 2 else "happy": 1.0}, "text": f"turn {i} words"}
             for i in range(n_turns)]  # fmt: skip
    counts = {"left": sum(t["speaker"] == "left" for t in turns), "right": sum(t["speaker"] == "right" for t in turns)}
    speakers = [{"id": s, "label": s, "channel": c, "turns": counts[s], "speaking_s": 0.9 * counts[s],
                 "speaking_share": counts[s] / n_turns, "emotion_share": {"happy" if s == "left" else "angry": 1.0},
                 "dominant_emotion": "happy" if s == "left" else "angry", "most_negative_turns": []}
                for c, s in enumerate(("left", "right"))]  # fmt: skip
    return {"speakers": speakers, "turns": turns}
