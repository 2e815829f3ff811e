"""Conversation pipeline cost per stage, in seconds per audio minute, for 1, 5 and 10 minutes of a two-voice call.

    python benchmarks/conversation.py [--minutes 1 5 10] [--repeats 3] [--out table.md]
    python benchmarks/conversation.py --clustering [--chunks 500 1000 2000 4000 8000]

A mono two-voice espeak-ng dialogue (``audio/dialogue.py``) of each length goes
through ``engine.conversation.analyse_conversation`` with ``speakers=auto``,
``num_speakers=2`` and ``transcribe``, on the random-weight stand-ins
(``make-test-model --kind sensevoice|campplus`` and the tiny emotion2vec),
models loaded and warmed first. Stages: VAD (silero), speaker (CAM++ chunks +
FunASR's clustering; split into ``embed`` and ``cluster`` in its own columns),
ASR (SenseVoice stand-in, per turn), emotion (emotion2vec, per turn). The
load average is printed beside each length (a shared machine's load moves
every figure); with ``--repeats`` each length runs that many times and each
figure is the minimum over the repeats (the least disturbed run; the lengths
run interleaved, so a load swing hits every length alike). Linear time means
the seconds per audio minute stay flat as the length grows; the last rows
give each stage's cost per minute at each length over the shortest one
(1.00× = linear).

``--clustering`` times the clustering alone on synthetic two-voice CAM++-sized
embeddings (192-dim) at chunk counts beyond the dialogue lengths (one chunk
per 0.75 s of speech: 8,000 chunks ≈ 100 min): FunASR's ``ClusterBackend`` on
every chunk against ``engine.conversation.cluster_chunks`` (bounded at
``MAX_CLUSTER_CHUNKS``), with and without a known speaker count.

The stand-ins are tiny (the real SenseVoiceSmall is 234M parameters, the
tiny emotion2vec 0.2M), so the absolute numbers say nothing about real-model
speed; the ratios say how each stage grows with the length.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    p.add_argument("--clustering", action="store_true", help="time the clustering alone (see the docstring)")
    p.add_argument("--chunks", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's own; 1 is steadier on a shared machine)")
    p.add_argument("--repeats", type=int, default=1, help="runs per length; each figure is the minimum")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args()
    if args.clustering:
        return clustering(args.chunks, max(1, args.repeats))

    import torch

    from emotion2vec_webui.audio.dialogue import long_dialogue
    from emotion2vec_webui.engine.conversation import analyse_conversation

    engine, speaker, asr, options = warm_standins("e2v-conv-bench-", args.threads)

    stages = ("vad", "speaker", "asr", "emotion")
    signals = {m: long_dialogue(m * 60)[0] for m in args.minutes}
    runs: dict[float, list] = {m: [] for m in args.minutes}
    for _ in range(max(1, args.repeats)):  # lengths interleaved: a load swing hits every length alike
        for minutes in args.minutes:
            t = time.perf_counter()
            conv = analyse_conversation(engine, signals[minutes], options, speaker_model=speaker, asr_model=asr)
            total = time.perf_counter() - t
            one = {k: conv.stage_s[k] / minutes for k in stages}
            one.update({f"speaker:{k}": conv.speaker_s.get(k, 0.0) / minutes for k in ("embed", "cluster")})
            runs[minutes].append((one, total / minutes, os.getloadavg()[0], len(conv.turns), len(conv.speakers),
                                  int(conv.speaker_s.get("chunks", 0))))  # fmt: skip
            print(f"  {minutes:g} min run: {len(conv.turns)} turns, {int(conv.speaker_s.get('chunks', 0))} chunks; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in one.items())
                  + f"; total {total / minutes:.2f} s/min; load {runs[minutes][-1][2]:.1f}", flush=True)  # fmt: skip
    rows = []
    for minutes in args.minutes:
        got = runs[minutes]
        per_min = {k: min(r[0][k] for r in got) for k in got[0][0]}
        rows.append((minutes, got[-1][3], got[-1][4], per_min, min(r[1] for r in got), max(r[2] for r in got),
                     got[-1][5]))  # fmt: skip
        print(f"{minutes:g} min (min of {len(got)}): s per audio minute: "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_min.items()) + f"; total {rows[-1][4]:.2f}", flush=True)

    first = rows[0]
    cols = (*stages, "speaker:embed", "speaker:cluster")
    lines = [
        "| audio | turns | speakers | chunks | " + " | ".join(f"{k} (s/min)" for k in cols)
        + " | total (s/min) | load (max) |",
        "|---" * (len(cols) + 6) + "|",
    ]
    for minutes, n_turns, n_spk, per_min, total, load, chunks in rows:
        lines.append(f"| {minutes:g} min | {n_turns} | {n_spk} | {chunks} | "
                     + " | ".join(f"{per_min[k]:.3f}" for k in cols) + f" | {total:.2f} | {load:.1f} |")  # fmt: skip
    for later in rows[1:]:  # each length against the shortest: 1.00× = linear
        ratio = {k: later[3][k] / max(first[3][k], 1e-9) for k in cols}
        lines.append(f"| {later[0]:g} min ÷ {first[0]:g} min (per minute) | | | | "
                     + " | ".join(f"{ratio[k]:.2f}×" for k in cols) + f" | {later[4] / first[4]:.2f}× | |")  # fmt: skip
    table = "\n".join(lines)
    machine = (f"{platform.system()} {platform.release()}, {platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}")  # fmt: skip
    print_figures(table, machine, args.out)
    return 0


def best_of(fn, repeats: int) -> tuple[float, object]:
    """(minimum seconds, last value) of ``repeats`` calls of ``fn``."""
    best, value = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def print_figures(table: str, machine: str, out: Path | None) -> None:
    """Print the table and the line saying what ran it; also write both to ``out`` (markdown) when given."""
    print(table)
    print(machine)
    if out:
        out.write_text(f"{table}\n\n{machine}\n", "utf-8")


def warm_standins(prefix: str, threads: int | None):
    """The random-weight stand-ins (tiny emotion2vec, SenseVoice, CAM++) in a new temp folder, loaded and warmed.

    Args:
        prefix: the temp folder's name prefix.
        threads: torch threads (None or 0: torch's own), set again after loading, since FunASR's
            AutoModel sets the process's thread count when it loads a model.

    Returns:
        (engine, speaker model, ASR model, ``ConversationOptions("auto", 2, True)``), warmed on a 20 s dialogue.
    """
    import torch

    from emotion2vec_webui.audio.dialogue import long_dialogue
    from emotion2vec_webui.engine.conversation import ConversationOptions, analyse_conversation
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.conversation_models import AsrModel, SpeakerModel
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins import make_test_model
    from emotion2vec_webui.model.standins_asr import make_conversation_standin

    if threads:
        torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    with quiet_funasr():
        emo = make_test_model(tmp / "emo", "tiny")
        sv = make_conversation_standin(tmp / "sensevoice", "sensevoice")
        cam = make_conversation_standin(tmp / "campplus", "campplus")
    engine = EmotionEngine.load(str(emo), device="cpu", precision="fp32")
    speaker, asr = SpeakerModel(str(cam), "ms", "cpu"), AsrModel(str(sv), "ms", "cpu")
    options = ConversationOptions("auto", 2, True)
    warm, _, _ = long_dialogue(20)
    analyse_conversation(engine, warm, options, speaker_model=speaker, asr_model=asr)  # loads and warms the models
    if threads:
        torch.set_num_threads(threads)
    return engine, speaker, asr, options


def clustering(sizes: list[int], repeats: int) -> int:
    """Seconds to cluster N chunk embeddings: FunASR's back-end on all of them vs the bounded clustering."""
    import numpy as np
    from funasr.models.campplus.cluster_backend import ClusterBackend

    from emotion2vec_webui.engine.conversation import MAX_CLUSTER_CHUNKS, cluster_chunks

    rng = np.random.default_rng(0)
    voices = rng.standard_normal((2, 192))
    cap = MAX_CLUSTER_CHUNKS
    print(f"| chunks (≈ min of speech) | FunASR k=2 (s) | bounded (cap {cap}) k=2 (s) | FunASR k=? (s) | "
          f"bounded (cap {cap}) k=? (s) | same partition, k=2 |\n|---|---|---|---|---|---|", flush=True)  # fmt: skip
    for n in sizes:
        truth = (np.arange(n) // 12) % 2  # 9 s turns
        emb = (voices[truth] + 0.8 * rng.standard_normal((n, 192))).astype(np.float32)
        cells, labels = [], {}
        for name, k in (("funasr2", 2), ("ours2", 2), ("funasr?", None), ("ours?", None)):
            if name == "funasr?" and n >= 2048:  # UMAP+HDBSCAN (numba) above 2,048 chunks: not timed here
                cells.append("UMAP branch")
                continue
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                if name.startswith("funasr"):
                    labels[name] = np.asarray(ClusterBackend()(emb.copy(), oracle_num=k))
                else:
                    labels[name] = cluster_chunks(emb, k)
                best = min(best, time.perf_counter() - t)
            cells.append(f"{best:.2f}")
        agree = max(np.mean(labels["ours2"] == labels["funasr2"]), np.mean(labels["ours2"] != labels["funasr2"]))
        print(f"| {n} (≈{n * 0.75 / 60:.0f}) | " + " | ".join(cells) + f" | {agree:.1%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
