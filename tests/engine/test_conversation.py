"""engine/conversation.py without real models: diarization through FunASR's back-end, summaries, options."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.engine.conversation import (
    KMEANS_SEED,
    ConversationOptions,
    _cut_to_spans,
    analyse_conversation,
    channel_speaker_ids,
    cluster_chunks,
    diarize,
    speaker_summaries,
)
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

RATE = 16000


class TruthSpeaker:
    """A speaker model that knows the truth: a chunk's embedding is its voice's direction plus a little noise."""

    def __init__(self, voice_of):
        self.voice_of = voice_of  # chunk -> 0/1
        self.rng = np.random.default_rng(0)

    def embed(self, chunks):
        base = np.eye(2, 16)
        return np.stack([base[self.voice_of(c)] + 0.05 * self.rng.standard_normal(16) for c in chunks]).astype(np.float32)


def _two_voices(n_turns=12, turn_s=2.5, gap_s=0.5):
    """Alternating 'voices': voice 0 is a 200 Hz tone, voice 1 a 900 Hz tone; silence between."""
    spans, t = [], 0.5
    for i in range(n_turns):
        spans.append((i % 2, t, t + turn_s))
        t += turn_s + gap_s
    wave = np.zeros(int((t + 0.5) * RATE), np.float32)
    for v, s, e in spans:
        n = int((e - s) * RATE)
        wave[int(s * RATE) : int(s * RATE) + n] = 0.3 * np.sin(2 * np.pi * (200 if v == 0 else 900) * np.arange(n) / RATE)
    return wave, spans


def _voice(chunk):
    spec = np.abs(np.fft.rfft(chunk))
    return int(np.argmax(spec) * RATE / len(chunk) > 500)


def test_diarize_follows_the_voices_and_never_overlaps():
    wave, spans = _two_voices()
    pieces = diarize(wave, [(s, e) for _, s, e in spans], TruthSpeaker(_voice), num_speakers=2)
    assert {lab for _, _, lab in pieces} == {0, 1}
    assert pieces[0][2] == 0  # labels by first appearance
    for v, s, e in spans:  # most of each true span goes to one label, the same for one voice throughout
        inside = [(max(ps, s), min(pe, e), lab) for ps, pe, lab in pieces if pe > s and ps < e]
        cover = {}
        for a, b, lab in inside:
            cover[lab] = cover.get(lab, 0) + b - a
        assert max(cover, key=cover.get) == v
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a[1] <= b[0] + 1e-6  # time order, no overlap (across speakers too)
    for s, e, _ in pieces:  # never outside speech
        assert any(vs - 1e-6 <= s and e <= ve + 1e-6 for _, vs, ve in spans)


class FakeEngine:
    def recognize(self, chunk, granularity, embedding, window_s=30.0):
        class R:
            pass

        r = R()
        scores = np.full(9, 0.05)
        scores[len(chunk) % 9] = 0.6
        r.scores = dict(zip(EMOTIONS, scores / scores.sum(), strict=True))
        r.emotion = max(r.scores, key=r.scores.get)
        r.confidence = r.scores[r.emotion]
        return r


def test_channels_mode_with_a_given_vad():
    a = np.zeros(RATE * 6, np.float32)
    b = np.zeros(RATE * 6, np.float32)
    conv = analyse_conversation(
        FakeEngine(), a, ConversationOptions("channels"), channels=[a, b],
        vad=lambda sig: [(0.5, 2.0)] if sig is a else [(2.5, 4.0), (4.5, 5.0)],
    )  # fmt: skip
    assert [(t["speaker"], t["start_s"], t["end_s"]) for t in conv.turns] == [
        ("left", 0.5, 2.0), ("right", 2.5, 4.0), ("right", 4.5, 5.0)]  # fmt: skip
    assert [s["id"] for s in conv.speakers] == ["left", "right"]
    right = conv.speakers[1]
    assert right["turns"] == 2 and abs(sum(right["emotion_share"].values()) - 1) < 1e-3
    assert abs(sum(s["speaking_share"] for s in conv.speakers) - 1) < 1e-3
    assert set(conv.stage_s) == {"vad", "speaker", "asr", "emotion"}


def test_options_and_names():
    assert channel_speaker_ids(2) == ["left", "right"] and channel_speaker_ids(3) == ["ch1", "ch2", "ch3"]
    with pytest.raises(E2VError) as err:
        ConversationOptions("everyone").check()
    assert err.value.code == "bad_request"
    with pytest.raises(E2VError):
        ConversationOptions("auto", 0).check()
    assert speaker_summaries([], ["S1"], "auto")[0]["dominant_emotion"] is None


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a renaming of the labels."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("num_speakers", [None, 3])
def test_clustering_a_sample_gives_the_full_answer(num_speakers):
    """Above the cap only a sample is clustered; on separable voices the partition is the one of all chunks."""
    rng = np.random.default_rng(1)
    directions = rng.standard_normal((3, 192))
    truth = np.repeat([0, 1, 2, 0, 1], 60)  # turns of 60 chunks, a voice coming back
    emb = (directions[truth] + 0.3 * rng.standard_normal((len(truth), 192))).astype(np.float32)
    full = cluster_chunks(emb, num_speakers, cap=10_000)
    capped = cluster_chunks(emb, num_speakers, cap=100)
    assert _same_partition(full, truth) and _same_partition(capped, truth)
    assert len(capped) == len(emb)


def test_clustering_below_the_cap_is_funasrs_backend_unchanged():
    from funasr.models.campplus.cluster_backend import ClusterBackend

    rng = np.random.default_rng(2)
    emb = rng.standard_normal((80, 192)).astype(np.float32)
    ours = cluster_chunks(emb, 2)
    # FunASR's k-means draws from numpy's global generator; ours from its own, seeded the same way
    np.random.seed(KMEANS_SEED)
    assert np.array_equal(ours, np.asarray(ClusterBackend()(emb.copy(), oracle_num=2)))


@pytest.mark.parametrize("num_speakers", [None, 4])
def test_clustering_is_deterministic_and_leaves_the_global_generator_alone(num_speakers):
    """One input, one answer: the spectral clustering's k-means is seeded, whatever numpy's global state."""
    rng = np.random.default_rng(3)
    emb = (rng.standard_normal((5, 192))[rng.integers(0, 5, 300)] + 1.5 * rng.standard_normal((300, 192)))
    emb = emb.astype(np.float32)
    answers = []
    for seed in range(4):
        np.random.seed(seed)
        answers.append(cluster_chunks(emb.copy(), num_speakers))
        drawn = np.random.random()
        np.random.seed(seed)
        assert drawn == np.random.random()  # the global generator was not drawn from
    assert all(np.array_equal(a, answers[0]) for a in answers[1:])
    wave, spans = _two_voices()
    first, second = (diarize(wave, [(s, e) for _, s, e in spans], TruthSpeaker(_voice), None) for _ in range(2))
    assert first == second


def test_cut_to_spans_is_the_brute_force_cut():
    rng = np.random.default_rng(3)
    for _ in range(20):
        edges = np.sort(rng.uniform(0, 100, 40))
        spans = [(float(a), float(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        cuts = np.sort(rng.uniform(0, 100, 30))
        pieces = [(float(a), float(b), int(rng.integers(3))) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        brute = sorted((max(s, vs), min(e, ve), lab) for s, e, lab in pieces for vs, ve in spans
                       if min(e, ve) - max(s, vs) > 0)  # fmt: skip
        assert _cut_to_spans(pieces, spans) == brute


def test_turn_frames_come_from_the_same_pass_as_the_turn_emotion(engine):
    """turn_frames: each turn keeps a frame track (~50 frames a second, nine rows summing to 1) while its
    utterance emotion and scores stay what they are without it."""
    rng = np.random.default_rng(4)
    a = (0.1 * rng.standard_normal(RATE * 5)).astype(np.float32)
    b = (0.1 * rng.standard_normal(RATE * 5)).astype(np.float32)
    spans = {id(a): [(0.5, 2.0)], id(b): [(2.5, 4.5)]}
    kwargs = {"channels": [a, b], "vad": lambda sig: spans[id(sig)]}
    plain = analyse_conversation(engine, a, ConversationOptions("channels"), **kwargs)
    framed = analyse_conversation(engine, a, ConversationOptions("channels", turn_frames=True), smoothing_s=0.3, **kwargs)
    assert all("frames" not in t for t in plain.turns)
    for p, f in zip(plain.turns, framed.turns, strict=True):
        assert (p["emotion"], p["scores"]) == (f["emotion"], f["scores"])
        track = np.asarray(f["frames"]["scores"])
        assert f["frames"]["hop_s"] == 0.02 and f["frames"]["smoothing_s"] == 0.3
        assert track.shape[1] == len(EMOTIONS)
        assert abs(len(track) * 0.02 - (f["end_s"] - f["start_s"])) <= 0.06  # one frame per 20 ms of the turn
        assert np.allclose(track.sum(axis=1), 1, atol=1e-3)
