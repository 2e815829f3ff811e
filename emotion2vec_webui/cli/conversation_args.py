"""The conversation flags shared by ``recognize`` and ``batch``: ``--speakers``, ``--num-speakers``, ``--transcribe``, ``--asr-model``."""

from __future__ import annotations

import argparse

from emotion2vec_webui.options import NUM_SPEAKERS, SPEAKERS


def add_conversation_args(p: argparse.ArgumentParser) -> None:
    """Add the conversation flags to a sub-command's parser."""
    g = p.add_argument_group("conversation (speakers, transcript and emotion per turn)")
    g.add_argument(
        "--speakers",
        choices=SPEAKERS.values,
        default=SPEAKERS.default,
        help="none: one result for the clip (default); channels: each channel is a speaker (left/right, ch1 …); "
        "auto: diarization (CAM++ speaker model, E2V_SPEAKER_MODEL). Adds result.json speakers/turns/summary, "
        "transcript.srt, transcript.vtt, turns.csv and turns.jsonl",
    )
    g.add_argument("--num-speakers", type=int, metavar="N",
                   help=f"auto: the number of speakers, when known ({NUM_SPEAKERS.low}-{NUM_SPEAKERS.high})")  # fmt: skip
    g.add_argument("--transcribe", action="store_true", help="add each turn's text (ASR: E2V_ASR_MODEL)")
    g.add_argument(
        "--asr-model",
        metavar="NAME",
        help="ASR model: sensevoice_small (default), paraformer_zh, a hub id or a directory",
    )


def conversation_options(args: argparse.Namespace) -> dict:
    """``RecognizeOptions`` keyword arguments from the parsed flags."""
    return {
        "speakers": args.speakers,
        "num_speakers": args.num_speakers,
        "transcribe": bool(args.transcribe),
        "asr_model": args.asr_model or None,
    }
