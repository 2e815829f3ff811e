"""Conversation pipeline cost per stage, in seconds per audio minute, for 1, 5 and 10 minutes of a two-voice call.

    python benchmarks/conversation.py [--minutes 1 5 10] [--out benchmarks/conversation.md]

A mono two-voice espeak-ng dialogue (``audio/dialogue.py``) of each length goes
through ``engine.conversation.analyse_conversation`` with ``speakers=auto``,
``num_speakers=2`` and ``transcribe``, on the random-weight stand-ins
(``make-test-model --kind sensevoice|campplus`` and the tiny emotion2vec),
models loaded and warmed first. Stages: VAD (silero), speaker (CAM++ chunks +
FunASR's clustering), ASR (SenseVoice stand-in, per turn), emotion
(emotion2vec, per turn). Linear time means the seconds per audio minute stay
flat as the length grows; the last column is each stage's cost per minute at
the longest length over the shortest one (1.0 = linear).

The stand-ins are tiny (the real SenseVoiceSmall is 234M parameters, the
tiny emotion2vec 0.2M), so the absolute numbers say nothing about real-model
speed; the ratios say how each stage grows with the length.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args()

    import torch

    from emotion2vec_webui.audio.dialogue import long_dialogue
    from emotion2vec_webui.engine.conversation import ConversationOptions, analyse_conversation
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.conversation_models import AsrModel, SpeakerModel
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins import make_test_model
    from emotion2vec_webui.model.standins_asr import make_conversation_standin

    tmp = Path(tempfile.mkdtemp(prefix="e2v-conv-bench-"))
    with quiet_funasr():
        emo = make_test_model(tmp / "emo", "tiny")
        sv = make_conversation_standin(tmp / "sensevoice", "sensevoice")
        cam = make_conversation_standin(tmp / "campplus", "campplus")
    engine = EmotionEngine.load(str(emo), device="cpu", precision="fp32")
    speaker, asr = SpeakerModel(str(cam), "ms", "cpu"), AsrModel(str(sv), "ms", "cpu")
    options = ConversationOptions("auto", 2, True)
    warm, _, _ = long_dialogue(20)
    analyse_conversation(engine, warm, options, speaker_model=speaker, asr_model=asr)  # loads and warms the models

    stages = ("vad", "speaker", "asr", "emotion")
    rows = []
    for minutes in args.minutes:
        mono, _, _ = long_dialogue(minutes * 60)
        t = time.perf_counter()
        conv = analyse_conversation(engine, mono, options, speaker_model=speaker, asr_model=asr)
        total = time.perf_counter() - t
        per_min = {k: conv.stage_s[k] / minutes for k in stages}
        rows.append((minutes, len(conv.turns), len(conv.speakers), per_min, total / minutes))
        print(f"{minutes:g} min: {len(conv.turns)} turns, {len(conv.speakers)} speakers; s per audio minute: "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_min.items()) + f"; total {total / minutes:.2f}", flush=True)

    first, last = rows[0], rows[-1]
    lines = [
        "| audio | turns | speakers | " + " | ".join(f"{k} (s/min)" for k in stages) + " | total (s/min) |",
        "|---" * (len(stages) + 4) + "|",
    ]
    for minutes, n_turns, n_spk, per_min, total in rows:
        lines.append(f"| {minutes:g} min | {n_turns} | {n_spk} | " + " | ".join(f"{per_min[k]:.2f}" for k in stages)
                     + f" | {total:.2f} |")  # fmt: skip
    ratio = {k: last[3][k] / max(first[3][k], 1e-9) for k in stages}
    lines.append(f"| {last[0]:g} min ÷ {first[0]:g} min (per minute) | | | "
                 + " | ".join(f"{ratio[k]:.2f}×" for k in stages) + f" | {last[4] / first[4]:.2f}× |")  # fmt: skip
    table = "\n".join(lines)
    machine = (f"{platform.system()} {platform.release()}, {platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}")  # fmt: skip
    print(table)
    print(machine)
    if args.out:
        args.out.write_text(f"{table}\n\n{machine}\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
