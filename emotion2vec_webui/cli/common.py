"""What every command shares: exit statuses, common flags, and settings with flags applied."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.options import GRANULARITY, HUB, PRECISION

# Exit codes, one table: 0 ok, 1 some batch items failed, 2 bad input, 3 model unavailable,
# 4 the output folder is full or cannot be written.
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_MODEL_UNAVAILABLE, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_CODES = {
    "model_unavailable": EXIT_MODEL_UNAVAILABLE,
    "overloaded": EXIT_MODEL_UNAVAILABLE,
    "storage_full": EXIT_STORAGE,
    "storage_unavailable": EXIT_STORAGE,
}


def exit_code_for(error: E2VError) -> int:
    return EXIT_CODES.get(error.code, EXIT_BAD_INPUT)


def add_model_args(
    p: argparse.ArgumentParser, *, model: bool = True, device: bool = True, precision: bool = True
) -> None:
    """``--model``, ``--hub``, ``--device``, ``--precision``: one spelling for every command (choices: options.py)."""
    if model:
        p.add_argument(
            "--model", help="model name, hub id or local directory (E2V_MODEL; default emotion2vec_plus_large)"
        )
    p.add_argument("--hub", choices=HUB.values, help="model hub: ms = ModelScope, hf = Hugging Face (E2V_HUB)")
    if device:
        p.add_argument("--device", help="auto | cpu | cuda | cuda:N (E2V_DEVICE; default auto)")
    if precision:
        p.add_argument(
            "--precision",
            choices=PRECISION.values,
            help="compute precision (E2V_PRECISION; auto = bf16/fp16 on GPU, on CPU bf16 with AMX else fp32; "
            "int8 = the fast CPU mode)",
        )


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, help="root for run folders (E2V_OUTPUT_DIR; default ./outputs)")


def add_recognition_args(p: argparse.ArgumentParser, embedding_default: bool = True) -> None:
    p.add_argument(
        "--granularity",
        choices=GRANULARITY.values,
        default=GRANULARITY.default,
        help="utterance: one result per file; frame: also scores every 20 ms (timeline, segments)",
    )
    p.add_argument(
        "--extract-embedding",
        dest="embedding",
        action=argparse.BooleanOptionalAction,
        default=embedding_default,
        help="write embedding.npy ([D] per utterance, [T, D] per frame); REST's extract_embedding",
    )
    # the old spelling, kept working (hidden): --embedding / --no-embedding
    p.add_argument("--embedding", dest="embedding", action=argparse.BooleanOptionalAction,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # fmt: skip


def add_segmentation_arg(p: argparse.ArgumentParser) -> None:
    """``--segmentation`` (REST's ``segmentation``; the old ``--segments`` kept as a hidden alias)."""
    from emotion2vec_webui.options import SEGMENTATION

    p.add_argument(
        "--segmentation",
        choices=SEGMENTATION.values,
        default=SEGMENTATION.default,
        help="frames: segments are runs of the frame emotions (frame granularity); "
        "vad: one emotion per speech segment (silero-vad), at either granularity",
    )
    p.add_argument("--segments", dest="segmentation", choices=SEGMENTATION.values, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # fmt: skip


def add_channel_args(p: argparse.ArgumentParser) -> None:
    """``--channels`` and ``--audio-stream`` (recognize, batch): what to take from a stereo file or a video."""
    p.add_argument(
        "--channels",
        default="mix",
        metavar="mix|left|right|N",
        help="mix: average all channels (default); left, right, or a channel index N counted from 0",
    )
    p.add_argument(
        "--audio-stream",
        type=int,
        metavar="N",
        help="which audio stream of a video or multi-track file, counted from 0 (default: the first)",
    )


def add_confidence_args(p: argparse.ArgumentParser) -> None:
    """``--calibration`` and ``--min-confidence`` (recognize, batch, stream; REST's and the stream's ``calibration``,
    ``min_confidence``)."""
    p.add_argument("--calibration", metavar="NAME", help="calibrated confidence: the saved calibration NAME "
                   "(see calibrate; of the nine classes, or of the --head it was fitted for)")  # fmt: skip
    p.add_argument("--min-confidence", type=float, metavar="X", help="abstain below X (0-1): such results are "
                   "'uncertain / 不确定', their top emotion kept beside; batch metrics add coverage and accuracy "
                   "on the answered part")  # fmt: skip


def confidence_options(args: argparse.Namespace) -> dict:
    """``calibration`` and ``min_confidence`` for RecognizeOptions, as typed (RecognizeOptions checks them)."""
    return {"calibration": getattr(args, "calibration", None), "min_confidence": getattr(args, "min_confidence", None)}


def channel_options(args: argparse.Namespace) -> dict:
    """``channels`` and ``audio_stream`` for RecognizeOptions, as typed (RecognizeOptions checks them)."""
    return {"channels": getattr(args, "channels", "mix"), "audio_stream": getattr(args, "audio_stream", None)}


def settings_from_args(args: argparse.Namespace):
    """E2V_* settings with command-line flags applied on top (``--model`` … ``--output-dir``, ``--heads-dir``)."""
    from emotion2vec_webui.config import load_settings

    s = load_settings()
    changes = {}
    for field in ("model", "hub", "device", "precision", "output_dir", "heads_dir"):
        value = getattr(args, field, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "log_level", None):
        changes["log_level"] = args.log_level.upper()
    return dataclasses.replace(s, **changes)


def reproducing_command(words: list[str], args: argparse.Namespace, flags: tuple[str, ...],
                        switches: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The command that reproduces a run, from its parsed flags (also right when called as ``main(argv)``).

    Args:
        words: what comes first: the program, the command, its positional arguments and required flags.
        args: the parsed flags.
        flags: the ``dest`` of each flag with a value, written ``--flag value`` when it was given.
        switches: the ``dest`` of each on/off flag, written ``--flag`` when on.
    """
    parts = list(words)
    for flag in flags:
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    parts += [f"--{flag.replace('_', '-')}" for flag in switches if getattr(args, flag, False)]
    return shlex.join(parts)


def print_report(report: dict, folder: Path, as_json: bool, text) -> None:
    """A job's report (``train-head``, ``calibrate``): under ``--json`` one JSON object with its folder, else
    ``text(report, folder)``, as a person reads it."""
    import json

    if as_json:
        print(json.dumps({**report, "folder": str(folder)}, ensure_ascii=False))
    else:
        print(text(report, folder))
