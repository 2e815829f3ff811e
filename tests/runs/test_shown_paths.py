"""runs/shown_paths.py: absolute server paths in messages become paths relative to the folders a user knows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from emotion2vec_webui.runs.shown_paths import shown_paths


def test_known_folders_are_named_as_the_user_knows_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    settings = SimpleNamespace(input_dirs=(tmp_path / "linked", tmp_path / "in"), output_dir=Path("outputs"),
                               heads_dir=tmp_path / "heads")  # fmt: skip
    cases = {
        f"{tmp_path}/in/happy/a.wav has no label": "happy/a.wav has no label",
        f"{tmp_path}/real/x.wav: cannot be decoded": "x.wav: cannot be decoded",  # the resolved spelling too
        f"{tmp_path}/linked/x.wav": "x.wav",
        f"{tmp_path}/outputs/outputs_20260101_000000/run.log": "outputs/outputs_20260101_000000/run.log",
        f"head 'h' already exists in {tmp_path}/heads; pass": "head 'h' already exists in heads; pass",
        f"{tmp_path}/in2/a.wav": f"{tmp_path}/in2/a.wav",  # another folder that merely starts alike
        "no path here / 没有路径": "no path here / 没有路径",
    }
    for text, want in cases.items():
        assert shown_paths(text, settings) == want, text
    assert shown_paths(f"{tmp_path}/in/a.wav", None) == f"{tmp_path}/in/a.wav"
