"""``emotion2vec-webui make-test-model DIR``: a random-weight model in FunASR's layout, for tests and offline trials."""

from __future__ import annotations

import argparse
import json

from emotion2vec_webui.cli.common import EXIT_OK


def add_parser(sub) -> None:
    """Add the ``make-test-model`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "make-test-model",
        help="write a random-weight model directory (FunASR layout) for tests and offline trials",
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--size", choices=["tiny", "base", "large"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kind",
        choices=("emotion", *STANDIN_KINDS),
        type=lambda text: OLD_KINDS.get(text, text),  # sensevoice, paraformer-zh: the old spellings, still taken
        default="emotion",
        help="emotion: emotion2vec (default); sensevoice_small / paraformer_zh / campplus / fsmn-vad (the names "
        "--asr-model and E2V_ASR_MODEL take): the conversation "
        "models' stand-ins (ASR, alternative ASR, speaker, VAD; FunASR's classes, published configs, a tiny "
        "tokenizer for the ASR models)",
    )
    p.add_argument(
        "--checkpoint-form",
        choices=["model", "state_dict", "plain", "module-prefix", "training", "legacy"],
        default="model",
        help="how model.pt wraps the weights (the forms real checkpoints come in; all load to the same scores)",
    )


# --kind's names (those of --asr-model / E2V_ASR_MODEL) → model/standins_asr.py's kinds
STANDIN_KINDS = {"sensevoice_small": "sensevoice", "paraformer_zh": "paraformer-zh", "campplus": "campplus",
                 "fsmn-vad": "fsmn-vad"}  # fmt: skip
OLD_KINDS = {"sensevoice": "sensevoice_small", "paraformer-zh": "paraformer_zh"}


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins import make_test_model

    if args.kind != "emotion":
        from emotion2vec_webui.model.standins_asr import make_conversation_standin

        with quiet_funasr():
            out = make_conversation_standin(args.directory, STANDIN_KINDS[args.kind], args.seed)
        info = json.loads((out / "e2v_random_weights.json").read_text("utf-8"))
        print(f"wrote a random-weight {STANDIN_KINDS[args.kind]} stand-in to {out} ({info['parameters'] / 1e6:.2f}M parameters)")
        return EXIT_OK
    with quiet_funasr():
        out = make_test_model(args.directory, args.size, args.seed, args.checkpoint_form)
    info = json.loads((out / "e2v_random_weights.json").read_text("utf-8"))
    print(
        f"wrote a random-weight {args.size} model to {out} "
        f"({info['parameters'] / 1e6:.2f}M parameters, embedding width {info['embed_dim']})"
    )
    return EXIT_OK
