"""``emotion2vec-webui train-head DATA --name NAME``: train a classifier head on one's own labels.

The model loads only when a clip's features are not in the cache: a second
run on the same data with the same model does no inference at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emotion2vec_webui.cli.common import EXIT_OK, add_model_args, print_report, reproducing_command, settings_from_args


def add_parser(sub) -> None:
    """Add the ``train-head`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "train-head",
        help="train a classifier head on your own labels (a folder per label, CSV path,label, RAVDESS/CREMA-D)",
        description="Extract utterance features (cached per file content and model), cross-validate logistic "
        "regression and a small MLP, and write E2V_HEADS_DIR/NAME/ with the weights, labels, feature spec, report "
        "and confusion matrix. Use the head with recognize/batch --head NAME or \"head\" on the API. A CSV of "
        "numeric targets (path[,speaker],arousal,valence,…) trains a regression head instead: ridge and an MLP, "
        "speaker-grouped CV with CCC, Pearson and MAE.",
    )
    p.add_argument("data", metavar="DATA", help="folder with a sub-folder per label, a CSV (path,label), "
                   "a folder of RAVDESS/CREMA-D files, or a CSV of numeric targets (path[,speaker],arousal,valence,…: "
                   "a regression head)")  # fmt: skip
    p.add_argument("--name", required=True, help="the head's name (its folder under E2V_HEADS_DIR)")
    p.add_argument("--heads-dir", type=Path, help="where heads live (E2V_HEADS_DIR; default ./heads)")
    p.add_argument("--classifier", choices=["auto", "logreg", "mlp", "ridge"], default="auto",
                   help="auto: cross-validate both, keep the better macro F1 (regression: ridge and mlp, the better "
                   "mean CCC; logreg means ridge there)")  # fmt: skip
    p.add_argument("--targets", help="numeric columns of a targets CSV to learn, e.g. 'arousal,valence,dominance' "
                   "(default: every numeric column but path/speaker)")  # fmt: skip
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (fewer when the data are few)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction held out for the held-out score (0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (splits, MLP)")
    p.add_argument("--labels-zh", help="Chinese label names, e.g. 'satisfied=满意,frustrated=沮丧'")
    p.add_argument("--baseline-map", help="score the built-in nine classes mapped to your labels, "
                   "e.g. 'angry=frustrated,happy=satisfied,neutral=satisfied'")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing head of that name")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.jobs.head_features import lazy_backbone
    from emotion2vec_webui.jobs.train_head import TrainOptions, parse_pairs, summary_json, train_head

    settings = settings_from_args(args)  # --heads-dir applied
    backbone, with_engine = lazy_backbone(settings)  # the model loads on the first clip not in the feature cache
    options = TrainOptions(
        classifier=args.classifier,
        folds=max(2, args.folds),
        holdout=min(max(args.holdout, 0.0), 0.5),
        seed=args.seed,
        labels_zh=parse_pairs(args.labels_zh, "--labels-zh"),
        baseline_map=parse_pairs(args.baseline_map, "--baseline-map"),
        overwrite=args.force,
        targets=tuple(t.strip() for t in (args.targets or "").split(",") if t.strip()),
        command=command_line(args),
    )
    # Each step is logged once by train_head (the terminal shows the log); printing it here too doubled every line.
    outcome = train_head(args.data, args.name, backbone, with_engine, settings, options)
    print_report(summary_json(outcome.report), outcome.folder, args.json, format_report)
    return EXIT_OK


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (from the parsed flags: also right when called as ``main(argv)``)."""
    flags = ("heads_dir", "classifier", "targets", "folds", "holdout", "seed", "labels_zh", "baseline_map",
             "model", "hub", "device", "precision")  # fmt: skip
    words = ["emotion2vec-webui", "train-head", str(args.data), "--name", args.name]
    return reproducing_command(words, args, flags, ("force", "json"))


def format_report(r: dict, folder: Path) -> str:
    """The report as a person reads it."""
    if r.get("kind") == "regression":
        return format_regression_report(r, folder)
    lines = [
        f"head {r['name']}: {r['n']} clips, labels {', '.join(r['labels'])}; classifier {r['classifier']}"
        f" ({r['folds']}-fold CV{', speaker-grouped' if r['grouped_by_speaker'] else ''})",
        f"cross-validated: accuracy (WA) {r['cv']['accuracy']:.3f}  UA {r['cv']['ua']:.3f}  "
        f"macro F1 {r['cv']['f1_macro']:.3f}  weighted F1 {r['cv']['f1_weighted']:.3f}",
    ]
    if r.get("holdout"):
        h = r["holdout"]
        lines.append(
            f"held-out ({h['n']} clips): accuracy {h['accuracy']:.3f}  UA {h['ua']:.3f}  macro F1 {h['f1_macro']:.3f}"
        )
    if r.get("baseline"):
        b = r["baseline"]
        lines.append(f"nine-class baseline (mapped): accuracy {b['accuracy']:.3f}  macro F1 {b['f1_macro']:.3f}")
    lines.append(f"{'label':<16}{'precision':>10}{'recall':>10}{'support':>9}")
    for label, c in r["cv"]["per_class"].items():
        lines.append(f"{label:<16}{c['precision']:>10.3f}{c['recall']:>10.3f}{c['support']:>9}")
    lines.append(f"head folder: {folder} (confusion_matrix.png, report.json)")
    return "\n".join(lines)


def format_regression_report(r: dict, folder: Path) -> str:
    """A regression head's report: CCC, Pearson's r and MAE per target, cross-validated and held out."""
    lines = [
        f"regression head {r['name']}: {r['n']} clips, targets {', '.join(r['targets'])}; regressor "
        f"{r['classifier']} ({r['folds']}-fold CV{', speaker-grouped' if r['grouped_by_speaker'] else ''})",
        f"cross-validated: mean CCC {r['cv']['ccc']:.3f}  Pearson {r['cv']['pearson']:.3f}  MAE {r['cv']['mae']:.3f}",
    ]
    if r.get("holdout"):
        h = r["holdout"]
        lines.append(f"held-out ({h['n']} clips): mean CCC {h['ccc']:.3f}  MAE {h['mae']:.3f}")
    lines.append(f"{'target':<16}{'CCC':>10}{'Pearson':>10}{'MAE':>10}")
    for target, c in r["cv"]["targets"].items():
        lines.append(f"{target:<16}{c['ccc']:>10.3f}{c['pearson']:>10.3f}{c['mae']:>10.4g}")
    lines.append(f"head folder: {folder} (report.json)")
    return "\n".join(lines)
