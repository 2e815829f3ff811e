"""``emotion2vec-webui similarity A B``: embedding cosine, emotion-score similarity, what they mean, both emotions.

The comparison is kept in ``<outputs>/similarity/`` (:func:`runs.similarity.record_similarity`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emotion2vec_webui.cli.common import EXIT_OK, add_model_args, exit_code_for, settings_from_args
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.similarity import MEANING, record_similarity, similarity_decoded


def add_parser(sub) -> None:
    """Add the ``similarity`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "similarity", help="how alike two clips are: embedding cosine and emotion-score similarity (kept in outputs)"
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    """``emotion2vec-webui similarity A B [--json]``: print the cosine and both clips' emotions."""
    from emotion2vec_webui.audio.decode import AudioLimits
    from emotion2vec_webui.audio.decoder_pool import decode_guarded
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.labels import EMOJI, EMOTIONS_ZH

    settings = settings_from_args(args)
    limits = AudioLimits.from_settings(settings)
    clips, status = [], EXIT_OK
    for name in (args.a, args.b):
        try:
            clips.append(decode_guarded(name, source_name=Path(name).name, limits=limits))
        except E2VError as exc:
            print(f"{name}: {exc.message} [{exc.code}]", file=sys.stderr)
            status = max(status, exit_code_for(exc))
    if status != EXIT_OK:
        return status
    engine = EmotionEngine.from_settings(settings)  # model_unavailable: cli.main prints it and exits 3
    out = similarity_decoded(engine, clips[0], clips[1], settings.window_s)
    out["record"] = record_similarity(settings.output_dir, out, engine.info.name)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return EXIT_OK
    print(f"cosine similarity (utterance embeddings) / 余弦相似度: {out['cosine']:.4f}")
    print(
        f"emotion score similarity (1 - JSD) / 情绪分布相似度: {out['scores_similarity']:.4f} — "
        f"{out['verdict']} / {out['verdict_zh']}"
    )
    print(MEANING[0])
    print(MEANING[1])
    for key in ("a", "b"):
        c = out[key]
        print(
            f"{key.upper()}: {c['source_name']}  {EMOJI[c['emotion']]} {c['emotion']} / {EMOTIONS_ZH[c['emotion']]}  "
            f"{c['confidence']:.3f}  ({c['duration_s']:.2f} s)"
        )
    print(f"kept as / 已保存: {Path(settings.output_dir) / 'similarity' / (out['record'] + '.json')}")
    return EXIT_OK
