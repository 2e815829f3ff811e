"""``emotion2vec-webui export OUT``: the model, its head and labels as a self-contained ONNX folder.

The folder runs with ONNX Runtime alone (its ``infer.py`` needs onnxruntime,
numpy, soundfile and soxr), and ``E2V_MODEL=OUT`` serves it here without
PyTorch. The writer is :mod:`model.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emotion2vec_webui.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_model_args

# What exporting imports beyond the serving install (both are default dependencies; a slim or
# hand-made environment may lack them, and torch.onnx only says so after the model has loaded).
EXPORT_NEEDS = ("onnx", "onnxruntime")


def missing_export_modules() -> list[str]:
    """The modules ``export`` needs that this environment lacks (checked before any model loads)."""
    import importlib.util

    return [name for name in EXPORT_NEEDS if importlib.util.find_spec(name) is None]


def add_parser(sub) -> None:
    """Add the ``export`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "export",
        help="export the model (features, classifier head, labels) to a self-contained ONNX folder",
    )
    p.add_argument("out", metavar="OUT", type=Path, help="folder to write (must be absent or empty)")
    add_model_args(p, device=False, precision=False)  # --model, --hub as every command spells them
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8 transformer matmuls)")
    p.add_argument("--head", metavar="NAME", help="put the trained head E2V_HEADS_DIR/NAME in the graph "
                   "(head_scores; a regression head's values: head_values)")  # fmt: skip
    p.add_argument("--heads-dir", type=Path, help="where heads live (E2V_HEADS_DIR; default ./heads)")
    p.add_argument("--calibration", metavar="NAME", help="put the saved calibration NAME (see calibrate) in the "
                   "folder: infer.py and E2V_MODEL=OUT apply it (a head's calibration needs --head of that head)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import sys

    missing = missing_export_modules()
    if missing:
        print(
            f"export needs {' and '.join(missing)}: pip install {' '.join(missing)} / "
            f"导出需要 {'、'.join(missing)}：pip install {' '.join(missing)}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.model.export import export_model
    from emotion2vec_webui.model.resolve import quiet_funasr

    settings = load_settings()
    head = loaded = None
    if args.head:
        from emotion2vec_webui.runs.stores.head_store import load_head

        loaded = load_head(args.heads_dir or settings.heads_dir, args.head)  # E2V_HEADS_DIR, read in config.py
        head = {
            "name": loaded.name,
            "kind": loaded.kind,  # a regression head's values come out as head_values, no softmax
            "labels": loaded.labels,
            "labels_zh": loaded.labels_zh,
            "spec": loaded.spec,
            "mean": loaded.mean,
            "scale": loaded.scale,
            "layers": loaded.layers,
        }
    calibration = None
    if args.calibration:
        calibration = calibration_document(args.heads_dir or settings.heads_dir, args.calibration, loaded)
    with quiet_funasr():
        config = export_model(args.out, args.model or settings.model, args.hub or settings.hub, args.quantize, head,
                              calibration)  # fmt: skip
    files = ", ".join(f for f in sorted(p.name for p in args.out.iterdir()))
    source = config["source_model"]
    print(f"exported {source['name']} (sha256 {source['checkpoint_sha256'][:12]}…) to {args.out}: {files}")
    print(f"try: python {args.out / 'infer.py'} clip.wav   ·   serve it: E2V_MODEL={args.out} emotion2vec-webui serve")
    return EXIT_OK


def calibration_document(heads_dir, name: str, head) -> dict:
    """The saved calibration ``name`` as ``calibration.json`` holds it, checked against the exported ``head``.

    Raises:
        E2VError: ``not_found``, ``head_invalid``; ``bad_request`` (a head's calibration without ``--head`` of that
            head); ``head_mismatch`` (fitted on another version of the head).
    """
    from emotion2vec_webui.engine.calibration import NINE, calibrate_head, to_document
    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.stores.calibration_store import load_calibration

    calibration = load_calibration(heads_dir, name)
    if calibration.target != NINE:
        if head is None or head.name != calibration.target:
            raise E2VError("bad_request", f"Calibration {name!r} is for head {calibration.target!r}: export with --head "
                                          f"{calibration.target}. / 校准 {name!r} 属于分类头 {calibration.target!r},"
                                          "请同时用 --head 导出该分类头。")  # fmt: skip
        calibrate_head(head, calibration)  # head_mismatch when fitted on another version of the head
    return to_document(calibration)
