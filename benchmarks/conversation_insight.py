"""What the summary block, turns.jsonl and report.html add to a conversation's processing time.

    python benchmarks/conversation_insight.py [--minutes 10] [--repeats 2] [--insight-repeats 20] [--out figures.md]

Side by side in one run: a two-voice espeak-ng dialogue of ``--minutes``
(``audio/dialogue.py``) goes through ``engine.conversation.analyse_conversation``
on the random-weight stand-ins (tiny emotion2vec, tiny SenseVoice graph, CAM++
at its published size; models loaded and warmed first) — the conversation run,
twice: mono with ``speakers=auto``, ``num_speakers=2`` and ``transcribe`` (the
full pipeline), and stereo with ``speakers=channels`` and no transcript (the
cheapest conversation: VAD and emotion only, so the largest ratio). Its result is
then given what the recognise flow adds after it: ``summary_for_result`` (the
summary block, ``engine/call_summary.py``), ``turns_jsonl_text`` and
``report_html`` — timed separately. Each figure is the minimum over its repeats
(the least disturbed run on a shared machine); the ratio is insight ÷
conversation. The stand-ins are tiny, so the conversation time is a *lower*
bound of the real models' (real SenseVoiceSmall and emotion2vec+ are far
slower), and the ratio an upper bound.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conversation import best_of, print_figures, warm_standins  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2, help="conversation runs; the figure is the minimum")
    p.add_argument("--insight-repeats", type=int, default=20, help="summary / report runs; the minimum")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args()

    import numpy as np
    import torch

    from emotion2vec_webui.audio.dialogue import dialogue, long_dialogue
    from emotion2vec_webui.engine.call_summary import summary_for_result
    from emotion2vec_webui.engine.conversation import ConversationOptions, analyse_conversation
    from emotion2vec_webui.runs.report import report_html
    from emotion2vec_webui.runs.transcripts import turns_jsonl_text

    engine, speaker, asr, options = warm_standins("e2v-insight-bench-", args.threads)

    seconds = args.minutes * 60
    signal = long_dialogue(seconds)[0]
    stereo = dialogue()[0]  # the same lines with each voice on its own channel, repeated to the length
    reps = int(np.ceil(seconds * 16000 / len(stereo)))
    channels = [np.tile(stereo[:, ch], reps)[: int(seconds * 16000)].astype(np.float32) for ch in (0, 1)]
    modes = {
        "auto + transcribe": (options, signal, None),
        "channels (no transcript)": (ConversationOptions("channels"), signal, channels),
    }
    lines = ["| conversation | turns | conversation run (s) | summary (s) | turns.jsonl (s) | report.html (s) | "
             "summary + jsonl + report ÷ run |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    n = args.insight_repeats
    for name, (opts, mix, chans) in modes.items():
        conv_s, conv = best_of(
            lambda o=opts, m=mix, c=chans: analyse_conversation(
                engine, m, o, channels=c, speaker_model=speaker, asr_model=asr
            ),
            args.repeats,
        )
        result = {
            "emotion": "neutral", "emotion_zh": "中立", "confidence": 0.5, "granularity": "utterance",
            "audio": {"source_name": "dialogue.wav", "duration_s": seconds},
            "model": {"name": "tiny", "random_weights": True}, "warnings": [],
            "speakers": conv.speakers, "turns": conv.turns,
        }  # fmt: skip
        summary_s, summary = best_of(lambda r=result: summary_for_result(r), n)
        result["summary"] = summary
        jsonl_s, _ = best_of(lambda r=result: turns_jsonl_text(r), n)
        report_s, html = best_of(lambda r=result: report_html(r), n)
        insight = summary_s + jsonl_s + report_s
        lines.append(f"| {name} | {len(conv.turns)} | {conv_s:.2f} (min of {args.repeats}) | {summary_s:.4f} | "
                     f"{jsonl_s:.4f} | {report_s:.4f} ({len(html) / 1024:.0f} KiB) | **{insight / conv_s:.2%}** |")  # fmt: skip
        print(lines[-1], f"load {os.getloadavg()[0]:.1f}", flush=True)
    table = "\n".join(lines)
    machine = (
        f"{args.minutes:g} min of audio, 2 voices, {len(summary['arc']['values'])} arc points; insight figures: min of "
        f"{n}; load average at the end {os.getloadavg()[0]:.1f}; {platform.system()} {platform.release()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"thread(s), Python {platform.python_version()}"
    )
    print_figures(table, machine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
