"""Uploaded ZIPs unpack inside their folder or not at all: hostile names, links, counts and sizes are refused whole."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from emotion2vec_webui.archives import extract_zip
from emotion2vec_webui.errors import E2VError

MiB = 1 << 20


def make_zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A ZIP of ``(name or ZipInfo, bytes)`` entries, names stored exactly as given (backslashes included)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def refused(src: Path, dest: Path, **caps) -> E2VError:
    caps = {"max_members": 100, "max_bytes": 10 * MiB, **caps}
    with pytest.raises(E2VError) as err:
        extract_zip(src, dest, **caps)
    assert err.value.code == "bad_request"
    assert " / " in err.value.message  # English / 中文
    assert str(dest.parent) not in err.value.message  # no server paths in what the client reads
    assert not dest.exists()  # the whole extraction is gone
    return err.value


@pytest.fixture
def place(tmp_path):
    """(uploads folder, the extraction folder inside it, a sentinel folder outside it)."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    return uploads, uploads / "set1", outside


def everything(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_good_zip_unpacks_with_either_separator(tmp_path, place):
    uploads, dest, _ = place
    src = make_zip(tmp_path / "ok.zip", [("happy/a.wav", b"A"), ("sad\\b.wav", b"BB"), ("sad/", b""),
                                         ("notes/.hidden.wav", b"skip"), ("list.csv", b"path,label\n")])  # fmt: skip
    written = extract_zip(src, dest, max_members=10, max_bytes=MiB, keep=lambda name: "/." not in "/" + name)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == ["happy/a.wav", "list.csv", "sad/b.wav"]
    assert (dest / "sad" / "b.wav").read_bytes() == b"BB"
    assert not (dest / "notes" / ".hidden.wav").exists()


@pytest.mark.parametrize(
    "name",
    [
        "\\{outside}\\x.wav",  # a leading backslash: absolute once '\' is a separator
        "/{outside}/x.wav",  # absolute
        "\\\\host\\share\\x.wav",  # UNC
        "//host/share/x.wav",
        "C:\\x.wav",  # drive letter
        "c:x.wav",
        "C:/x.wav",
        "..\\x.wav",  # parent, Windows style
        "../x.wav",
        "a\\..\\..\\x.wav",  # mixed: a folder, then out
        "a/../../x.wav",
        "a/b\\..\\../../x.wav",
        "ok/..",
        "\\\\?\\C:\\x.wav",  # a Windows extended path
    ],
)
def test_hostile_names_are_refused_whole(tmp_path, place, name):
    uploads, dest, outside = place
    name = name.format(outside=str(outside).strip("/").replace("/", "\\") if name.startswith("\\") else
                       str(outside).strip("/"))  # fmt: skip
    src = make_zip(tmp_path / "evil.zip", [("good/first.wav", b"fine"), (name, b"EVIL")])
    err = refused(src, dest)
    assert "ZIP" in err.message
    assert everything(outside) == [] and everything(uploads) == []
    assert not Path("/x.wav").exists()


def _nul_named_zip(path: Path) -> Path:
    """A member whose stored name holds a NUL (zipfile cuts names at NUL when writing, so the bytes are patched)."""
    make_zip(path, [("a.wavQQ.txt", b"x")], compression=zipfile.ZIP_STORED)
    data = path.read_bytes()
    assert data.count(b"a.wavQQ.txt") == 2  # local header and central directory
    path.write_bytes(data.replace(b"a.wavQQ.txt", b"a.wav\x00Q.txt"))
    return path


def _empty_named_zip(path: Path) -> Path:
    """A member whose stored name is empty (zipfile will not write one, so the headers are patched)."""
    data = bytearray(make_zip(path, [("Q", b"x")], compression=zipfile.ZIP_STORED).read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, local + 26, 0)  # name length 0 in both headers
    struct.pack_into("<H", data, central + 28, 0)
    del data[central + 46]  # the name's one byte, from the central directory
    eocd = data.index(b"PK\x05\x06")
    struct.pack_into("<L", data, eocd + 12, struct.unpack_from("<L", data, eocd + 12)[0] - 1)  # its size
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["a\x01b.wav", "dir\x1b[31m/x.wav", "x\x7f.wav", "ok/a\x85.wav", "/", "\\"])
def test_control_characters_and_bare_roots_are_refused(tmp_path, place, name):
    _, dest, _ = place
    refused(make_zip(tmp_path / "ctl.zip", [(zipfile.ZipInfo(name), b"x")]), dest)


def test_an_empty_name_is_refused(tmp_path, place):
    _, dest, _ = place
    src = _empty_named_zip(tmp_path / "empty.zip")
    with zipfile.ZipFile(src) as zf:
        assert [m.orig_filename for m in zf.infolist()] == [""]
    refused(src, dest)


def test_a_nul_in_a_name_is_refused(tmp_path, place):
    _, dest, _ = place
    refused(_nul_named_zip(tmp_path / "nul.zip"), dest)


def test_symlink_members_are_refused(tmp_path, place):
    uploads, dest, outside = place
    link = zipfile.ZipInfo("happy/link.wav")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    src = make_zip(tmp_path / "link.zip", [(link, str(outside / "x.wav")), ("happy/a.wav", b"A")])
    err = refused(src, dest)
    assert "link" in err.message
    assert everything(outside) == [] and everything(uploads) == []


def test_device_and_fifo_members_are_refused(tmp_path, place):
    _, dest, _ = place
    fifo = zipfile.ZipInfo("a.wav")
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    refused(make_zip(tmp_path / "fifo.zip", [(fifo, b"")]), dest)


def test_too_many_members(tmp_path, place):
    _, dest, _ = place
    src = make_zip(tmp_path / "many.zip", [(f"a/{i}.wav", b"x") for i in range(4)])
    assert "3" in refused(src, dest, max_members=3).message
    assert len(extract_zip(src, dest, max_members=4, max_bytes=MiB)) == 4


def _as_zip64(path: Path) -> Path:
    """The same ZIP ending in ZIP64 end records that tell the truth and a classic end record that lies (1 entry)."""
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    entries, cd_size, cd_offset = struct.unpack_from("<HLL", data, eocd + 10)
    body = data[: cd_offset + cd_size]
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 100, cd_offset, 0)
    path.write_bytes(body + record + locator + end)
    return path


@pytest.mark.parametrize("zip64", [False, True])
def test_a_huge_central_directory_is_refused_before_it_is_read(tmp_path, place, monkeypatch, zip64):
    _, dest, _ = place
    src = make_zip(tmp_path / "wide.zip", [(f"{i:05d}" + "n" * 1000 + ".wav", b"") for i in range(50)])
    if zip64:
        _as_zip64(src)
        with zipfile.ZipFile(src) as zf:  # zipfile reads all 50 entries, by the ZIP64 record
            assert len(zf.infolist()) == 50

    def never(*args, **kwargs):
        raise AssertionError("zipfile read the central directory")

    monkeypatch.setattr("emotion2vec_webui.archives.zipfile.ZipFile", never)
    refused(src, dest, max_members=10)


def test_a_zip_bomb_stops_on_the_bytes_written(tmp_path, place):
    uploads, dest, _ = place
    zeros = bytes(MiB)
    src = make_zip(tmp_path / "bomb.zip", [(f"x/{i}.wav", zeros) for i in range(3)])
    assert src.stat().st_size < 20_000
    err = refused(src, dest, max_bytes=2 * MiB)
    assert "2 MB" in err.message or "2.0 MB" in err.message
    assert everything(uploads) == []


def test_sizes_in_the_headers_are_not_trusted(tmp_path, place):
    """Headers that claim 100 bytes for a 3 MiB member: the unpacked bytes, not the claim, are what counts."""
    _, dest, _ = place
    src = make_zip(tmp_path / "liar.zip", [("x/a.wav", bytes(3 * MiB))])
    data = bytearray(src.read_bytes())
    struct.pack_into("<L", data, data.index(b"PK\x03\x04") + 22, 100)
    struct.pack_into("<L", data, data.index(b"PK\x01\x02") + 24, 100)
    src.write_bytes(bytes(data))
    refused(src, dest, max_bytes=MiB)


@pytest.mark.parametrize(
    "entries",
    [
        [("a/x.wav", b"1"), ("a/x.wav", b"2")],  # the same name twice: the second never overwrites the first
        [("a\\x.wav", b"1"), ("a/x.wav", b"2")],
        [("a", b"file"), ("a/x.wav", b"2")],  # a file where a folder must be
    ],
)
def test_members_that_collide_are_refused(tmp_path, place, entries):
    _, dest, _ = place
    refused(make_zip(tmp_path / "dup.zip", entries), dest)


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04 truncated"])
def test_not_a_zip(tmp_path, place, content):
    _, dest, _ = place
    src = tmp_path / "bad.zip"
    src.write_bytes(content)
    refused(src, dest)


def test_an_existing_destination_is_never_used(tmp_path, place):
    uploads, dest, _ = place
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_zip(make_zip(tmp_path / "ok.zip", [("a.wav", b"A")]), dest, max_members=10, max_bytes=MiB)
    assert everything(dest) == ["keep.txt"]
