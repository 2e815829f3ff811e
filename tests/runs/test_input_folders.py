"""One input-folder policy for REST's audio_path and the Batch tab's server folders (runs/inputs/input_files.py)."""

from __future__ import annotations

import os

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.input_files import open_input_file, resolve_input_folder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "inputs"
    (root / "calls" / "day1").mkdir(parents=True)
    (root / "calls" / "day1" / "a.wav").write_bytes(b"RIFF")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "a.wav").write_bytes(b"RIFF")
    os.symlink(outside, root / "calls" / "link")
    return root, outside


def test_relative_absolute_and_the_root_itself(tree, monkeypatch):
    root, _ = tree
    monkeypatch.chdir(root.parent)  # a relative path is looked up in the input folders, never the working directory
    assert resolve_input_folder("calls/day1", [root]) == root / "calls" / "day1"
    assert resolve_input_folder(str(root / "calls"), [root]) == root / "calls"
    assert resolve_input_folder(str(root), [root]) == root  # a whole input folder may be batched
    with pytest.raises(E2VError) as err:
        resolve_input_folder("inputs/calls", [root])  # exists relative to the cwd, not inside the root
    assert err.value.code in ("not_found", "forbidden")


@pytest.mark.parametrize("raw", ["calls/link", "calls/../../secret", "~/", "/etc", "calls/day1/a.wav"])
def test_refused_like_audio_path(tree, raw):
    root, _ = tree
    with pytest.raises(E2VError) as err:
        resolve_input_folder(raw, [root])
    assert err.value.code in ("forbidden", "bad_request", "not_found")
    if raw == "calls/link":  # the same refusal a file behind the link gets
        with pytest.raises(E2VError) as file_err:
            open_input_file("calls/link/a.wav", [root])
        assert err.value.code == file_err.value.code == "forbidden"


def test_off_without_input_dirs(tree):
    with pytest.raises(E2VError) as err:
        resolve_input_folder("calls", [])
    assert err.value.code == "forbidden"
