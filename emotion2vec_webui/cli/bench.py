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
from emotion2vec_webui.bench.label_set_table import label_set_markdown, label_set_rows, set_items
from emotion2vec_webui.cli.common import add_model_args, settings_from_args
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.label_sets import LABEL_SETS, PUBLISHED, label_set


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
    p.add_argument(
        "--label-set",
        choices=list(LABEL_SETS),
        metavar="SET",
        help="with --dataset: also UA/WA/macro F1 on a benchmark label set (labels outside it dropped), beside "
        f"emotion2vec+ large's published figures for the 4-class sets; one of {', '.join(LABEL_SETS)}",
    )
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
    chosen = label_set(args.label_set)
    if chosen is not None and not args.dataset:
        raise E2VError("bad_request", "--label-set needs --dataset (labelled clips) / --label-set 需要 --dataset")
    dropped = None
    if chosen is not None:  # the set's clips, labels mapped into it (bench/label_set_table.py)
        items, dropped = set_items(args.dataset, chosen)
    else:
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
    set_rows = label_set_rows(results, [c for _, c in items], chosen) if chosen is not None else None
    if set_rows is not None:
        print("\n" + label_set_markdown(set_rows, chosen, dropped))
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
            "label_set": None if chosen is None else {
                "name": chosen.name, "classes": list(chosen.classes), "models": set_rows,
                "dropped": dict(dropped), "published": PUBLISHED.get(chosen.name),
            },
        }  # fmt: skip
        _write_json_atomic(Path(args.output), payload)
    return 0 if all(r.ok for r in results) else 1
