"""Benchmark label sets: the nine classes mapped onto the classes published tables score (IEMOCAP-4, RAVDESS-8 …).

Published speech-emotion figures are computed on a dataset's own label set, not on our nine classes:
IEMOCAP's four (angry, happy with excited merged in, neutral, sad), RAVDESS's eight, CREMA-D's six, or the
"4-class primary emotions" (angry, happy, neutral, sad) of every dataset in the emotion2vec+ README's Table IV.
A :class:`LabelSet` says, once, how a reference label as a dataset spells it becomes one of the set's classes,
and how the nine-class answer does:

* **references** — the dataset's spellings (EmoBox's ``data/<dataset>/label_map.json``, emo-box/EmoBox commit
  08280f2, plus their class names and the usual English words); a label the set does not know (IEMOCAP
  ``fru``, RAVDESS ``calm`` in a 4-class set) is **dropped** from the scoring and counted, never guessed;
* **predictions** — the set's class with the highest nine-class score (``evaluation`` scores each class from
  the one nine-class score it corresponds to): a zero-shot model's answer restricted to the set. How often the
  unrestricted top class fell outside the set is reported beside it. RAVDESS ``calm`` has no nine-class
  counterpart: in ``ravdess8`` it is a reference class that is never predicted (its recall is 0).

:data:`PUBLISHED` holds the emotion2vec+ large figures of that Table IV (UA, WA, F1 in %, ddlBoJack/emotion2vec
README "Performance on EmoBox for 4-class primary emotions (without fine-tuning)", ``src/emotion2vec+performance.png``,
commit a0e606c) for the 4-class sets, so ``bench`` can print them beside the measured ones. No other figure is
cited: the table gives none for the full label sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

PRIMARY = ("angry", "happy", "neutral", "sad")  # the "4-class primary emotions"
# EmoBox's class names (label_map.json values) → our class keys; RAVDESS calm has no nine-class counterpart.
_EMOBOX_CLASS = {"Neutral": "neutral", "Happy": "happy", "Angry": "angry", "Sad": "sad", "Fear": "fearful",
                 "Disgust": "disgusted", "Surprise": "surprised", "Calm": "calm"}  # fmt: skip
_WORDS = {"anger": "angry", "happiness": "happy", "joy": "happy", "sadness": "sad", "fear": "fearful",
          "disgust": "disgusted", "surprise": "surprised"}  # fmt: skip
# emo-box/EmoBox data/<dataset>/label_map.json (commit 08280f2): dataset spelling → EmoBox class.
_EMOBOX_MAPS: dict[str, dict[str, str]] = {
    "iemocap": {"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"},
    "ravdess": {"Angry": "Angry", "Surprised": "Surprise", "Sad": "Sad", "Disgust": "Disgust", "Happy": "Happy",
                "Calm": "Calm", "Neutral": "Neutral", "Fearful": "Fear"},
    "cremad": {"ANG": "Angry", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"},
    "meld": {"neutral": "Neutral", "joy": "Happy", "sadness": "Sad", "surprise": "Surprise", "disgust": "Disgust",
             "anger": "Angry", "fear": "Fear"},
    "esd": {"Neutral": "Neutral", "Angry": "Angry", "Happy": "Happy", "Sad": "Sad", "Surprise": "Surprise"},
    "casia": {"neutral": "Neutral", "angry": "Angry", "surprise": "Surprise", "sad": "Sad", "happy": "Happy",
              "fear": "Fear"},
    "tess": {"fear": "Fear", "disgust": "Disgust", "angry": "Angry", "sad": "Sad", "ps": "Surprise",
             "neutral": "Neutral", "happy": "Happy"},
    "savee": {"a": "Angry", "d": "Disgust", "f": "Fear", "h": "Happy", "n": "Neutral", "sa": "Sad", "su": "Surprise"},
    "emodb": {"anger": "Angry", "disgust": "Disgust", "fear": "Fear", "happy": "Happy", "neutral": "Neutral",
              "sad": "Sad"},  # boredom: no class of ours, left out
}  # fmt: skip
_TITLES = {"iemocap": "IEMOCAP", "ravdess": "RAVDESS", "cremad": "CREMA-D", "meld": "MELD", "esd": "ESD",
           "casia": "CASIA", "tess": "TESS", "savee": "SAVEE", "emodb": "EmoDB"}  # fmt: skip
_EXTRA = {"iemocap": {"excited": "happy"}}  # spellings beyond EmoBox's (IEMOCAP's full words)


@dataclass(frozen=True)
class LabelSet:
    name: str  # as --label-set takes it: iemocap4, ravdess8 …
    title: str  # as tables name it: "IEMOCAP, 4 classes"
    dataset: str  # EmoBox's dataset id
    classes: tuple[str, ...]  # the set's classes (our keys; RAVDESS "calm"), in our class order
    spellings: dict[str, str]  # a reference label (lower case) → one of ``classes``

    def reference(self, label: str | None, label_map: dict[str, str] | None = None) -> str | None:
        """A reference label as one of the set's classes (``--label-map`` first, case ignored), or None (dropped)."""
        if not label:
            return None
        key = label.strip().lower()
        target = (label_map or {}).get(key, key)
        target = self.spellings.get(target.lower(), target.lower())
        return target if target in self.classes else None

    def predicted(self, scores: dict[str, float]) -> str:
        """The set's class with the highest nine-class score (classes without a nine-class counterpart never win)."""
        scored = [c for c in self.classes if c in EMOTIONS]
        return max(scored, key=lambda c: float(scores.get(c) or 0.0))


def _label_set(dataset: str, keep: tuple[str, ...] | None) -> LabelSet:
    emobox = _EMOBOX_MAPS[dataset]
    spellings: dict[str, str] = {}
    for raw, cls in emobox.items():
        ours = _EMOBOX_CLASS[cls]
        spellings[raw.lower()] = spellings[cls.lower()] = spellings[ours] = ours
    for word, ours in {**_WORDS, **_EXTRA.get(dataset, {})}.items():
        if ours in spellings.values():
            spellings.setdefault(word, ours)
    present = set(spellings.values())
    chosen = tuple(c for c in (*EMOTIONS, "calm") if c in present and (keep is None or c in keep))
    spellings = {k: v for k, v in spellings.items() if v in chosen}
    name = f"{dataset}{len(chosen)}"
    return LabelSet(name, f"{_TITLES[dataset]}, {len(chosen)} classes", dataset, chosen, spellings)


def _all_sets() -> dict[str, LabelSet]:
    out = {}
    for dataset in _EMOBOX_MAPS:
        for keep in (PRIMARY, None):  # the 4-class primary set, then the dataset's full set (when it is larger)
            ls = _label_set(dataset, keep)
            out.setdefault(ls.name, ls)
    return out


LABEL_SETS: dict[str, LabelSet] = _all_sets()

# emotion2vec+ large on EmoBox_test, 4-class primary emotions, no fine-tuning: (UA %, WA %, F1 %) — Table IV of the
# ddlBoJack/emotion2vec README (src/emotion2vec+performance.png, commit a0e606c).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "iemocap4": (70.7, 67.3, 68.5),
    "ravdess4": (86.0, 83.9, 85.0),
    "cremad4": (88.4, 88.5, 88.4),
    "meld4": (47.3, 57.4, 47.5),
    "esd4": (87.0, 87.0, 87.0),
    "casia4": (76.5, 76.5, 76.5),
    "tess4": (100.0, 100.0, 100.0),
    "savee4": (100.0, 100.0, 100.0),
    "emodb4": (98.6, 98.6, 98.6),
}
PUBLISHED_SOURCE = (
    "emotion2vec+ large, EmoBox_test, 4-class primary emotions without fine-tuning: Table IV in the "
    "ddlBoJack/emotion2vec README (src/emotion2vec+performance.png)"
)


def label_set(name: str | None) -> LabelSet | None:
    """The label set ``name`` (None or empty: none).

    Raises:
        E2VError: ``bad_request`` naming the sets there are.
    """
    if name is None or not str(name).strip():
        return None
    key = str(name).strip().lower()
    if key not in LABEL_SETS:
        known = ", ".join(LABEL_SETS)
        raise E2VError("bad_request", f"--label-set must be one of {known}, not {str(name)[:40]!r}. / "
                                      f"--label-set 必须是 {known} 之一。")  # fmt: skip
    return LABEL_SETS[key]
