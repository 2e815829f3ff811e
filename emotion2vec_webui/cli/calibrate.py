"""``emotion2vec-webui calibrate DATA --name NAME``: fit calibrated confidence on a labelled set.

The model loads only when a clip's features are not in the cache (the cache ``train-head`` fills).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emotion2vec_webui.cli.common import EXIT_OK, add_model_args, print_report, reproducing_command, settings_from_args


def add_parser(sub) -> None:
    """Add the ``calibrate`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "calibrate",
        help="fit calibrated confidence (temperature scaling) for the nine classes or a head on a labelled set",
        description="Fit temperature scaling (plus a per-class bias when it lowers the held-out NLL) on a labelled "
        "set, with speaker-grouped folds when the file names say who speaks (RAVDESS, CREMA-D). Prints ECE, Brier "
        "score and NLL before and after on held-out folds, writes E2V_HEADS_DIR/.calibrations/NAME/ "
        '(calibration.json, reliability.png). Use it with recognize/batch --calibration NAME, "calibration" on the '
        "API, or the calibration picker in the UI.",
    )
    p.add_argument("data", metavar="DATA", help="folder with a sub-folder per label, a CSV (path,label), "
                   "or a folder of RAVDESS/CREMA-D files")  # fmt: skip
    p.add_argument("--name", required=True, help="the calibration's name")
    p.add_argument("--head", metavar="NAME", help="calibrate the trained head NAME (default: the nine classes)")
    p.add_argument("--heads-dir", type=Path, help="where heads and calibrations live (E2V_HEADS_DIR; default ./heads)")
    p.add_argument("--folds", type=int, default=5, help="held-out folds (fewer when the speakers are few)")
    p.add_argument("--seed", type=int, default=0, help="random seed (folds without speakers)")
    p.add_argument(
        "--label-map", help="nine classes: dataset label=class pairs, e.g. 'calm=neutral,surprise=surprised'"
    )
    p.add_argument("--force", action="store_true", help="replace a calibration of that name")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.jobs.calibrate import CalibrateOptions, calibrate
    from emotion2vec_webui.jobs.head_features import lazy_backbone
    from emotion2vec_webui.jobs.train_head import parse_pairs

    settings = settings_from_args(args)  # --heads-dir applied
    backbone, with_engine = lazy_backbone(settings)  # the model loads on the first clip not in the feature cache
    options = CalibrateOptions(
        head=args.head or None,
        folds=max(2, args.folds),
        seed=args.seed,
        label_map=parse_pairs(args.label_map, "--label-map"),
        overwrite=args.force,
        command=command_line(args),
    )
    outcome = calibrate(args.data, args.name, backbone, with_engine, settings, options)
    print_report(outcome.report, outcome.folder, args.json, format_report)
    return EXIT_OK


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run."""
    flags = ("head", "heads_dir", "folds", "seed", "label_map", "model", "hub", "device", "precision")
    words = ["emotion2vec-webui", "calibrate", str(args.data), "--name", args.name]
    return reproducing_command(words, args, flags, ("force",))


def format_report(r: dict, folder: Path) -> str:
    """The report as a person reads it: before and after on held-out folds, the fitted numbers."""
    target = "the nine classes" if r["target"] == "nine" else f"head {r['target']}"
    folds = f"{r['folds']} {'speaker-grouped' if r['grouped_by_speaker'] else 'stratified'} folds"
    lines = [
        f"calibration {r['name']} of {target}: {r['n']} clips, held out over {folds}",
        f"{'':<8}{'ECE':>9}{'Brier':>9}{'NLL':>9}{'accuracy':>10}",
    ]
    for when in ("before", "after"):
        m = r[when]
        lines.append(f"{when:<8}{m['ece']:>9.4f}{m['brier']:>9.4f}{m['nll']:>9.4f}{m['accuracy']:>10.3f}")
    lines.append(f"temperature {r['temperature']:.4f}" + ("; per-class bias kept" if r["with_bias"] else ""))
    lines.append("abstaining below a threshold (held out, calibrated): --min-confidence, coverage, accuracy answered")
    for row in r.get("thresholds") or []:
        accuracy = "-" if row["accuracy_answered"] is None else f"{row['accuracy_answered']:.3f}"
        lines.append(f"  {row['min_confidence']:.2f}  {row['coverage']:.3f}  {accuracy}")
    lines.append(f"calibration folder: {folder} (calibration.json, reliability.png)")
    return "\n".join(lines)
