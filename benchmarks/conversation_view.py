"""What the Conversation view's frame tracks cost: the turns' frame scores, result.json's size, and the page.

    python benchmarks/conversation_view.py [--minutes 10] [--repeats 2] [--view-repeats 5] [--out figures.md]

Side by side in one run, on a stereo two-voice espeak-ng call of ``--minutes``
(``audio/dialogue.py``, one voice per channel): ``analyse_conversation`` with
``speakers=channels`` on the random-weight tiny emotion2vec, the turns at
utterance granularity and with ``turn_frames`` (what the Conversation tab asks
for: the head on every frame of the same forward pass, plus the smoothing),
interleaved; the figure is the emotion stage (``stage_s["emotion"]``: every
turn through the model), the VAD's spans computed once for both. Then the size of the
turns in result.json with and without ``turns[].frames``, and the view's HTML
(``ui.conversation_tab.conversation_html`` with tracks, the summary's arc,
markers and table): its size and the time to build it. Each time is the
minimum over its repeats (the least disturbed run on a shared machine). The
tiny model's forward pass is far faster than Emotion2Vec+'s, so the relative
cost of the tracks here is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conversation import best_of, print_figures  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2, help="conversation runs per variant; the figure is the minimum")
    p.add_argument("--view-repeats", type=int, default=5, help="view builds; the minimum")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args()

    import numpy as np
    import torch

    from emotion2vec_webui.audio.dialogue import dialogue
    from emotion2vec_webui.engine.call_summary import summary_for_result
    from emotion2vec_webui.engine.conversation import ConversationOptions, analyse_conversation
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.engine.vad import speech_segments
    from emotion2vec_webui.model.standins import make_test_model
    from emotion2vec_webui.ui.conversation_tab import conversation_html

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="e2v-view-bench-"))
    engine = EmotionEngine.load(str(make_test_model(tmp / "emo", "tiny")), device="cpu", precision="fp32")
    torch.set_num_threads(args.threads)  # loading sets the thread count
    stereo, rate, _ = dialogue()
    reps = int(np.ceil(args.minutes * 60 * rate / len(stereo)))
    stereo = np.tile(stereo, (reps, 1))[: int(args.minutes * 60 * rate)]
    channels = [np.ascontiguousarray(stereo[:, 0]), np.ascontiguousarray(stereo[:, 1])]
    spans = {id(c): speech_segments(c) for c in channels}  # the VAD once: both variants cut the same turns
    vad = lambda signal: spans[id(signal)]  # noqa: E731

    def run(frames: bool):
        options = ConversationOptions("channels", turn_frames=frames)
        return analyse_conversation(engine, channels[0], options, channels=channels, vad=vad)

    run(True)  # warm
    plain_s = framed_s = float("inf")
    for _ in range(args.repeats):  # interleaved, so both variants see the same stretch of a shared machine's load
        plain = run(False)
        framed = run(True)
        plain_s, framed_s = min(plain_s, plain.stage_s["emotion"]), min(framed_s, framed.stage_s["emotion"])
    load = os.getloadavg()[0]
    plain_kb = len(json.dumps(plain.turns)) / 1024
    framed_kb = len(json.dumps(framed.turns)) / 1024
    result = {"audio": {"duration_s": args.minutes * 60}, "model": {"random_weights": True},
              "speakers": framed.speakers, "turns": framed.turns}  # fmt: skip
    result["summary"] = summary_for_result(result)
    view_s, html = best_of(lambda: conversation_html(result, "x.wav"), args.view_repeats)
    bare = {**result, "turns": plain.turns, "summary": None}
    bare_kb = len(conversation_html(bare, "x.wav")) / 1024
    rows = [
        ("turns at utterance granularity (emotion stage)", f"{plain_s:.2f} s", f"min of {args.repeats}"),
        ("turns with frame tracks (`turn_frames`)", f"{framed_s:.2f} s", f"min of {args.repeats}"),
        ("**tracks ÷ utterance**", f"**{framed_s / plain_s:.3f}×**", ""),
        ("result.json `turns` without / with `frames`", f"{plain_kb:.0f} KiB / {framed_kb:.0f} KiB", ""),
        ("view HTML without tracks and summary / with them", f"{bare_kb:.0f} KiB / {len(html) / 1024:.0f} KiB", ""),
        ("building the view with tracks, arc, markers, table", f"{view_s * 1000:.0f} ms", f"min of {args.view_repeats}"),
    ]
    lines = ["| what | figure | repeats |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    table = "\n".join(lines)
    machine = (
        f"{args.minutes:g} min stereo call, {len(framed.turns)} turns, "
        f"{sum(len(t['frames']['scores']) for t in framed.turns)} turn frames; load average {load:.1f}; "
        f"{platform.system()} {platform.release()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch thread(s), Python {platform.python_version()}"
    )
    print_figures(table, machine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
