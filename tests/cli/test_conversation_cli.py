"""``recognize --speakers … --transcribe --asr-model DIR`` with the Paraformer-zh stand-in, as a user runs it
(the entry point in-process: tests/cli/test_cli.py runs the process itself)."""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from io import StringIO

import pytest

from emotion2vec_webui.cli.main import main
from emotion2vec_webui.labels import EMOTIONS
from tests.cli.test_cli import run_main
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def paraformer_dir(tmp_path_factory):
    out = StringIO()  # a module-scoped fixture has no capsys
    with redirect_stdout(out):
        code = main(["make-test-model", str(tmp_path_factory.mktemp("asr") / "paraformer"), "--kind", "paraformer-zh"])
    stdout = out.getvalue()
    assert code == 0, stdout
    assert "paraformer-zh stand-in" in stdout
    return stdout.split(" to ", 1)[1].split(" (", 1)[0]


def test_transcribe_with_the_paraformer_stand_in(tmp_path, tiny_model_dir, paraformer_dir, stereo_dialogue, capsys,
                                                 monkeypatch):  # fmt: skip
    p = run_main(
        capsys, monkeypatch, "recognize", str(stereo_dialogue[0]), "--speakers", "channels", "--transcribe", "--asr-model", paraformer_dir,
        "--json", "--output-dir", str(tmp_path / "outputs"),
        env={"E2V_MODEL": str(tiny_model_dir), "MODELSCOPE_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.splitlines()[-1])
    check_result(r)
    turns = r["turns"]
    assert turns and {t["speaker"] for t in turns} == {"left", "right"}
    for t in turns:  # text per turn (random weights: any characters of the tiny vocabulary), no SenseVoice tags
        assert isinstance(t["text"], str) and "<|" not in t["text"]
        assert t["asr_emotion"] is None and t["language"] is None  # Paraformer gives neither
        assert list(t["scores"]) == list(EMOTIONS)
    assert any(t["text"] for t in turns), "the stand-in produced no tokens at all"
