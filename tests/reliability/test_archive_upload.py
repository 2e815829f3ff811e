"""ZIP slip through the Train tab's real upload route: hostile member names write nothing outside the upload folder.

Each ZIP holds a small labelled set plus one hostile member, named the way a
Windows tool would write it (backslashes), aimed at a sentinel folder outside
the server's tree, at an existing file there, or at ``E2V_INPUT_DIRS``. It is
sent to the running server the way a script drives the page: ``gradio_client``
uploads it through Gradio's upload route and calls ``/train_head``. The whole
ZIP must be refused (``bad_request``), the server's tree must be unchanged but
for the uploaded file itself, the sentinel untouched, and no extraction
folder left under ``outputs/.train-uploads``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import tone, write_audio

SENTINEL = b"SENTINEL: the bytes an attacker wants to replace"


@pytest.fixture(scope="module")
def client(reliability_server):
    from gradio_client import Client

    return Client(reliability_server.url, verbose=False, download_files=False)


@pytest.fixture
def outside(tmp_path_factory):
    """A folder outside the server's tree (one per test), holding one file an attacker would overwrite."""
    folder = tmp_path_factory.mktemp("zip_slip_outside")
    (folder / "sentinel.wav").write_bytes(SENTINEL)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_audio(tmp_path_factory.mktemp("zip_clip") / "c.wav", tone(0.5, 16000), 16000, "wav").read_bytes()


def win(path: Path) -> str:
    """``/a/b`` as ``\\a\\b``."""
    return str(path).replace("/", "\\")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (files with their bytes), but Gradio's uploads, the logs and the uploads' parent."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("outputs/.gradio-tmp", "logs")) or rel == "outputs/.train-uploads":
            continue
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


HOSTILE = {
    "absolute": lambda srv, out: win(out / "new.wav"),  # \tmp\…\new.wav
    "overwrite": lambda srv, out: win(out / "sentinel.wav"),
    "unc": lambda srv, out: "\\" + win(out / "unc.wav"),  # \\tmp\…\unc.wav: a UNC-shaped name
    "input_dirs": lambda srv, out: win(srv.inputs / "planted" / "x.wav"),
    "drive": lambda srv, out: "C:\\x.wav",
    "parent": lambda srv, out: "..\\..\\..\\..\\x.wav",
    "mixed": lambda srv, out: "a\\..\\..\\..\\..\\..\\x.wav",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_zip_members_write_nothing_outside(reliability_server, client, outside, clip, tmp_path, kind):
    from gradio_client import handle_file

    srv = reliability_server
    name = HOSTILE[kind](srv, outside)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label in ("calm", "loud"):
            for i in range(2):
                zf.writestr(f"{label}/{i}.wav", clip)
        zf.writestr(name, b"EVIL " + clip)
    upload = tmp_path / f"set_{kind}.zip"
    upload.write_bytes(buf.getvalue())
    before = tree(srv.root)

    report, image, _ = client.predict(
        "", handle_file(str(upload)), f"slip_{kind}", "auto", "", "", False, api_name="/train_head"
    )

    assert sorted(p.name for p in outside.iterdir()) == ["sentinel.wav"]
    assert (outside / "sentinel.wav").read_bytes() == SENTINEL
    assert tree(srv.root) == before  # nothing new in outputs/, heads/, the input folder …
    uploads = srv.outputs / ".train-uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # the extraction folder is gone
    assert not Path("/x.wav").exists()
    assert 'data-error-code="bad_request"' in report and "ZIP" in report, report  # the whole ZIP is refused
    assert image is None
