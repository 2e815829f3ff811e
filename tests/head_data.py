"""A labelled set whose classes differ acoustically, for the trained-head tests: speech (espeak-ng), tones, noise.

Any features can tell these apart, even the random-weight tiny model's: a head
trained on them must score well above chance, and the same clips with shuffled
labels must not (the pipeline learns from the audio, not from leakage).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.signals import espeak_available, noise, speech, tone, write_audio

LABELS = ("speech", "tone", "noise")
_WORDS = ["hello there", "good morning", "what a day", "see you soon", "thank you very much", "where is it",
          "the cat sat down", "open the door", "it is raining", "one two three"]  # fmt: skip


def make_set(root: Path, per_class: int, seed: int = 0) -> Path:
    """``root/<label>/<label>_NNN.wav`` for the three labels (speech falls back to a chirp without espeak-ng)."""
    rng = np.random.default_rng(seed)
    for i in range(per_class):
        for label in LABELS:
            (root / label).mkdir(parents=True, exist_ok=True)
            rate = 16000
            seconds = float(rng.uniform(0.8, 1.6))
            if label == "speech" and espeak_available():
                x, rate = speech(_WORDS[i % len(_WORDS)], speed=int(rng.integers(130, 200)), pitch=int(rng.integers(20, 80)))
            elif label == "speech":  # a rising chirp stands in
                t = np.arange(int(seconds * rate)) / rate
                x = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t).astype(np.float32)
            elif label == "tone":
                x = tone(seconds, rate, freq=float(rng.uniform(150, 600)))[:, 0]
            else:
                x = noise(seconds, rate, amp=float(rng.uniform(0.05, 0.3)), seed=int(rng.integers(1 << 30)))[:, 0]
            write_audio(root / label / f"{label}_{i:03d}.wav", x, rate, "wav")
    return root


def shuffled_csv(root: Path, out: Path, seed: int = 0) -> Path:
    """A CSV ``path,label`` over the same clips with the labels permuted."""
    files = sorted(p for p in root.rglob("*.wav"))
    labels = [p.parent.name for p in files]
    labels = list(np.random.default_rng(seed).permutation(labels))
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([str(f), lab] for f, lab in zip(files, labels, strict=True))
    return out


def write_targets_csv(root: Path, speakers: int, seed: int = 0) -> Path:
    """``<root>/dims.csv``: ``path,speaker,arousal,valence`` over the set's clips, random targets (arousal in 1-7,
    valence standard normal), the clips dealt to ``speakers`` speakers in turn: a regression head's training set."""
    rng = np.random.default_rng(seed)
    out = root / "dims.csv"
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "arousal", "valence"])
        for i, f in enumerate(sorted(root.rglob("*.wav"))):
            w.writerow([f.relative_to(root), f"spk{i % speakers}", round(float(rng.uniform(1, 7)), 3),
                        round(float(rng.normal()), 3)])  # fmt: skip
    return out


@contextlib.contextmanager
def started_service(engine, model_dir: Path, root: Path):
    """A started :class:`runs.service.Service` on ``engine`` writing under ``root`` (outputs/, heads/): training
    jobs queue their feature extraction on its inference worker."""
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    settings = dataclasses.replace(
        load_settings(), model=str(model_dir), device="cpu", output_dir=root / "outputs", heads_dir=root / "heads"
    )
    service = Service(settings, engine)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def app_client(engine, model_dir: Path, root: Path, **changes):
    """The whole app in-process (``create_app``, a TestClient) with a service on ``engine``: the model
    ``model_dir``, outputs/ and heads/ under ``root``, no token; ``changes`` (e.g. ``input_dirs``) on top.

    Yields:
        (client, service, settings).
    """
    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    settings = dataclasses.replace(
        load_settings(), model=str(model_dir), device="cpu", output_dir=root / "outputs", heads_dir=root / "heads",
        api_token=None, **changes,
    )  # fmt: skip
    service = Service(settings, engine)
    with TestClient(create_app(settings, service)) as client:
        yield client, service, settings


TINY_DIM = 64  # the tiny test model's embedding width


def write_head(folder: Path, checkpoint: str, dim: int = TINY_DIM, labels=("calm", "tense", "upbeat"), seed: int = 5,
               **arrays) -> Path:
    """A head folder in engine/heads.py's format (two dense layers), written by hand: no training.

    ``arrays`` replace the generated ones (``mean``, ``scale``, ``W0``, ``b0``, ``W1``, ``b1``).
    """
    import json

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    weights = {
        "mean": rng.normal(0, 0.1, dim),
        "scale": rng.uniform(0.5, 2, dim),
        "W0": rng.normal(0, 0.3, (dim, 16)),
        "b0": rng.normal(0, 0.1, 16),
        "W1": rng.normal(0, 0.3, (16, len(labels))),
        "b1": rng.normal(0, 0.1, len(labels)),
        **arrays,
    }
    np.savez(folder / "weights.npz", **weights)
    doc = {"labels": list(labels), "labels_zh": {labels[0]: "平静"}}
    (folder / "labels.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    spec = {"model": "tiny", "checkpoint_sha256": checkpoint, "pooling": "mean", "embedding_dim": dim}
    (folder / "spec.json").write_text(json.dumps(spec), "utf-8")
    return folder
