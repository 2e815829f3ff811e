"""``emotion2vec-webui bench``: Emotion2Vec+ and Hugging Face peers side by side (bench/ does the measuring)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

from emotion2vec_webui.bench.benchmark import (
    _measure_in_subprocess,
    _write_json_atomic,
    cpu_model,
    dataset_items,
    markdown_table,
    parse_durations,
    score_dataset,
)
from emotion2vec_webui.cli.common import add_model_args, settings_from_args
from emotion2vec_webui.errors import E2VError


def add_parser(sub) -> None:
    """Add the ``bench`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser("bench", help="compare models on load time, latency, memory and accuracy")
    p.add_argument(
        "--models",
        default="emotion2vec_plus_large",
        help="comma-separated: names, local dirs, hf:<repo id>, hf-random:wav2vec2-base, hf-random:hubert-large",
    )
    p.add_argument("--durations", default="3,10,30", help="clip lengths in seconds (comma-separated)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dataset", type=Path, help="labelled clips: RAVDESS/CREMA-D folder or CSV of path,label")
    add_model_args(p, model=False)  # --hub, --device, --precision as every command spells them
    p.add_argument("--output", type=Path, help="write the JSON results here (Markdown goes to stdout)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark for ``args.models``; print the Markdown table; write JSON to ``args.output``."""
    from emotion2vec_webui.model.resolve import cpu_threads

    settings = settings_from_args(args)
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if not models:
        raise E2VError("bad_request", "--models: name at least one model")
    if args.repeats < 1:
        raise E2VError("bad_request", "--repeats must be at least 1")
    durations = parse_durations(args.durations)
    items = dataset_items(args.dataset) if args.dataset else []
    results = []
    for name in models:
        print(f"measuring {name} …", file=sys.stderr, flush=True)
        spec = {
            "model": name,
            "hub": settings.hub,
            "device": settings.device,
            "precision": settings.precision,
            "durations": durations,
            "repeats": args.repeats,
            "dataset": [f for f, _ in items],
        }
        if name.startswith("hf-random:"):  # build and save the stand-in once, outside the measured process
            from emotion2vec_webui.bench.peers import prepare_random_peer

            prepare_random_peer(name.split(":", 1)[1])
        results.append(_measure_in_subprocess(spec))
    if items:
        results = score_dataset(results, [c for _, c in items])
    print(markdown_table(results, durations, bool(items)))
    machine = f"{cpu_model()} ({os.uname().machine}), {cpu_threads()} CPU cores"
    print(f"\n{machine}; latency over {args.repeats} repeats after one warm-up call; RTF = p50 / clip length.")
    if any(r.random_weights for r in results):
        print("Random-weight models: speed and memory are the real architectures'; accuracy is chance.")
    if args.output:
        payload = {
            "machine": machine,
            "durations_s": durations,
            "repeats": args.repeats,
            "dataset": str(args.dataset) if args.dataset else None,
            "models": [{k: v for k, v in asdict(r).items() if k != "item_scores"} for r in results],
        }
        _write_json_atomic(Path(args.output), payload)
    return 0 if all(r.ok for r in results) else 1
