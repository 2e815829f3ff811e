"""Malformed head folders and tampered export folders (issue 26, items 4 and 10).

One server is started on a heads folder holding every malformed head at once
beside a good one: it must come up, list the good head with a ``problems``
entry for each bad one, and answer ``422 head_invalid`` when a bad one is
selected, without ever allocating what a weights file claims. An export folder
whose labels.json, config.json or head.npz was tampered with is
``model_unavailable`` (CLI exit 3, one line, no traceback).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.lib import format as npy_format

from emotion2vec_webui.audio.signals import tone, write_audio
from tests.early_servers import plan_start
from tests.head_data import TINY_DIM, write_head
from tests.server_util import ServerProcess, server_env

GOOD = "good"
HUGE_CLAIM = 2**49  # bytes an npy header claims: 512 TiB
BOMB_BYTES = 512 << 20  # what a ~0.5 MB weights.npz inflates to


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _npz_with_member(path: Path, name: str, header: dict, data_bytes: int, others: dict[str, np.ndarray]) -> None:
    """A weights.npz whose member ``name`` has the npy ``header`` given, followed by ``data_bytes`` zero bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in others.items():
            with zf.open(f"{key}.npy", "w") as fh:
                npy_format.write_array(fh, np.asarray(value))
        with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
            npy_format.write_array_header_1_0(fh, header)
            chunk = bytes(1 << 20)
            left = data_bytes
            while left > 0:
                fh.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)


def make_bad_heads(heads: Path, checkpoint: str) -> dict[str, str]:
    """Every malformed head folder of the issue (and a few more) under ``heads``; name → what is wrong."""
    bad: dict[str, str] = {}

    def folder(name: str, why: str, **arrays) -> Path:
        bad[name] = why
        return write_head(heads / name, checkpoint, **arrays)

    (folder("labels_list", "labels.json is a list") / "labels.json").write_text('["calm", "tense", "upbeat"]')
    (folder("labels_nonstring", "non-string labels") / "labels.json").write_text('{"labels": [1, {"a": 2}, null]}')
    (folder("labels_broken_json", "labels.json is not JSON") / "labels.json").write_text('{"labels": [')
    (folder("spec_null", "spec.json is null") / "spec.json").write_text("null")
    (folder("spec_hash_number", "checkpoint_sha256 is a number") / "spec.json").write_text(
        json.dumps({"checkpoint_sha256": 12345, "embedding_dim": TINY_DIM})
    )
    (folder("no_labels", "labels.json is missing") / "labels.json").unlink()
    rng = np.random.default_rng(1)
    folder("shape_mismatch", "W0 does not take mean's width", W0=rng.normal(0, 1, (TINY_DIM // 2, 16)))
    folder("too_few_outputs", "the last layer has 2 outputs for 3 labels", W1=rng.normal(0, 1, (16, 2)), b1=np.zeros(2))
    folder("zero_scale", "a zero in scale", scale=np.r_[np.zeros(1), np.ones(TINY_DIM - 1)])
    folder("nan_weights", "NaN in W0", W0=np.full((TINY_DIM, 16), np.nan))
    folder("object_array", "an object array (pickle)")
    np.save(heads / "object_array" / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(heads / "object_array" / "weights.npz", "a") as zf:
        zf.write(heads / "object_array" / "obj.npy", "extra.npy")
    (heads / "object_array" / "obj.npy").unlink()
    # Internally consistent, the right backbone hash, but 32-wide features: the model gives 64.
    bad["wrong_width"] = "32-wide head on a 64-wide model"
    write_head(heads / "wrong_width", checkpoint, dim=TINY_DIM // 2)
    plain = {"mean": np.zeros(TINY_DIM), "scale": np.ones(TINY_DIM), "b0": np.zeros(16), "W1": np.zeros((16, 3)),
             "b1": np.zeros(3)}  # fmt: skip
    huge = folder("huge_header", "an npy header claiming 512 TiB")
    _npz_with_member(huge / "weights.npz", "W0", {"descr": "<f8", "fortran_order": False,
                     "shape": (TINY_DIM, HUGE_CLAIM // 8 // TINY_DIM)}, 64, plain)  # fmt: skip
    bomb = folder("bomb", "a small weights.npz inflating to 512 MiB")
    _npz_with_member(bomb / "weights.npz", "W0", {"descr": "<f8", "fortran_order": False,
                     "shape": (TINY_DIM, BOMB_BYTES // 8 // TINY_DIM)}, BOMB_BYTES, plain)  # fmt: skip
    assert (bomb / "weights.npz").stat().st_size < 2 << 20
    return bad


def _bad_heads_start(tiny_model_dir, tmp_path_factory):
    """The heads folder written now; the server started by the returned function (early, tests/early_servers.py)."""
    root = tmp_path_factory.mktemp("bad_heads")
    heads = root / "heads"
    checkpoint = _sha256(tiny_model_dir / "model.pt")
    write_head(heads / GOOD, checkpoint)
    bad = make_bad_heads(heads, checkpoint)
    (heads / "not a head name").mkdir()  # not a head name: ignored, not a problem
    (heads / "empty").mkdir()  # no head files at all: not a head
    env = server_env(tiny_model_dir, root, heads_dir=heads, max_duration_s=5)

    def start(early):
        srv = early.enter(ServerProcess(env))
        srv.root, srv.bad = root, bad
        return srv

    return start


plan_start("bad_heads_server", _bad_heads_start)


@pytest.fixture(scope="module")
def bad_heads_server(early_servers, request):
    return early_servers.planned("bad_heads_server", request)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_audio(tmp_path_factory.mktemp("clip") / "c.wav", tone(1.0, 16000), 16000, "wav").read_bytes()


def _recognize(srv, clip: bytes, head: str) -> httpx.Response:
    return httpx.post(srv.url + "/api/v1/recognize", files={"file": ("c.wav", clip)}, data={"head": head}, timeout=60)


def test_server_comes_up_and_lists_the_good_head_and_each_problem(bad_heads_server):
    srv = bad_heads_server
    r = httpx.get(srv.url + "/api/v1/heads", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["name"] for h in body["heads"]] == [GOOD] and body["heads"][0]["compatible"] is True
    problems = {p["name"]: p for p in body["problems"]}
    assert set(problems) == set(srv.bad), body["problems"]
    for name, p in problems.items():
        assert p["code"] == "head_invalid" and name in p["message"] and " / " in p["message"], p
        assert str(srv.root) not in p["message"]
    logged = (srv.root / "logs" / "server.log").read_text("utf-8")
    for name in set(srv.bad) - {"wrong_width"}:  # that one is a problem only beside a 64-wide model
        assert f"head {name} is invalid and skipped" in logged, name


def test_the_ui_head_picker_lists_the_good_head(bad_heads_server):
    config = httpx.get(bad_heads_server.url + "/config", timeout=30)
    assert config.status_code == 200
    assert f'"{GOOD} — calm, tense, upbeat"' in config.text and "labels_list" not in config.text


def test_selecting_a_bad_head_is_422_head_invalid(bad_heads_server, clip):
    srv = bad_heads_server
    for name in srv.bad:
        r = _recognize(srv, clip, name)
        assert r.status_code == 422, (name, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "head_invalid" and name in error["message"], (name, error)
        assert str(srv.root) not in error["message"] and " / " in error["message"]
    good = _recognize(srv, clip, GOOD)
    assert good.status_code == 200, good.text
    assert good.json()["head"]["labels"] == ["calm", "tense", "upbeat"]


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS is read from /proc")
def test_a_weights_bomb_is_refused_without_allocating(bad_heads_server, clip):
    srv = bad_heads_server
    before = _peak_rss_bytes(srv.proc.pid)
    for name in ("bomb", "huge_header", "bomb"):
        r = _recognize(srv, clip, name)
        assert r.status_code == 422 and r.json()["error"]["code"] == "head_invalid", r.text
    grew = _peak_rss_bytes(srv.proc.pid) - before
    assert grew < 100 << 20, f"peak RSS grew by {grew >> 20} MiB"


def test_the_loader_reads_only_the_npy_headers(tmp_path):
    import tracemalloc

    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.stores.head_store import load_head

    make_bad_heads(tmp_path, "0" * 64)
    for name in ("huge_header", "bomb"):
        tracemalloc.start()
        with pytest.raises(E2VError) as caught:
            load_head(tmp_path, name)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert caught.value.code == "head_invalid" and "weights.npz" in caught.value.message
        assert peak < 8 << 20, f"{name}: {peak >> 20} MiB allocated"


def _rewrite_in_place(path: Path, text: str) -> None:
    """New content of the same size, same inode and the same mtime: the folder's signature does not change."""
    st = path.stat()
    data = text.encode()
    assert len(data) <= st.st_size
    with open(path, "r+b") as fh:
        fh.write(data + b" " * (st.st_size - len(data)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_failures_and_successes_are_cached_until_the_folder_changes(tmp_path):
    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.stores.head_store import load_head

    folder = write_head(tmp_path / "h", "0" * 64)
    labels = folder / "labels.json"
    good_text = labels.read_text("utf-8")
    labels.write_bytes(json.dumps(["calm", "tense", "upbeat"]).encode().ljust(len(good_text.encode())))
    with pytest.raises(E2VError) as first:
        load_head(tmp_path, "h")
    assert first.value.code == "head_invalid"
    _rewrite_in_place(labels, good_text)  # fixed, but the signature is the same: the cached failure stands
    with pytest.raises(E2VError):
        load_head(tmp_path, "h")
    os.utime(labels, ns=(0, labels.stat().st_mtime_ns + 10**9))  # the folder changed: read again
    head = load_head(tmp_path, "h")
    assert head.labels == ["calm", "tense", "upbeat"]
    _rewrite_in_place(labels, "[]")  # broken, same signature: the cached head stands
    assert load_head(tmp_path, "h") is head


# ---- export folders (item 10) ----


def _tampered(src: Path, dst: Path, labels=None, config=None, head=None) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.int8.onnx"))
    if labels is not None:
        (dst / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), "utf-8")
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config), "utf-8")
    if head is not None:
        np.savez(dst / "head.npz", **head)
    return dst


def test_cli_recognize_on_a_tampered_export_is_model_unavailable(tiny_export_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    wav = write_audio(tmp_path / "a.wav", tone(1.0, 16000), 16000, "wav")
    labels = json.loads((tiny_export_dir / "labels.json").read_text("utf-8"))
    as_strings = _tampered(tiny_export_dir, tmp_path / "strings", {**labels, "labels": [x["en"] for x in labels["labels"]]})
    p = subprocess.run(
        [sys.executable, "-m", "emotion2vec_webui", "recognize", str(wav), "--model", str(as_strings),
         "--output-dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr and "model_unavailable" in p.stderr and "labels.json" in p.stderr
    lines = [line for line in p.stderr.splitlines() if "model_unavailable" in line]
    assert len(lines) == 1 and " / " in lines[0], p.stderr


def test_each_tampered_export_is_model_unavailable(tiny_export_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.errors import ModelUnavailableError

    labels = json.loads((tiny_export_dir / "labels.json").read_text("utf-8"))
    config = json.loads((tiny_export_dir / "config.json").read_text("utf-8"))
    nine = labels["labels"]
    with np.load(tiny_export_dir / "head.npz") as z:
        weight, bias = z["weight"], z["bias"]
    cases = {
        "renamed": ("labels.json", {**labels, "labels": [{**nine[0], "en": "furious"}, *nine[1:]]}, None, None),
        "shortened": ("labels.json", {**labels, "labels": nine[:8]}, None, None),
        "html": ("labels.json", {**labels, "labels": [{**x, "en": f"<b>{x['en']}</b>"} for x in nine]}, None, None),
        "strings": ("labels.json", {**labels, "labels": [x["en"] for x in nine]}, None, None),
        "list": ("labels.json", [x["en"] for x in nine], None, None),
        "zh_number": ("labels.json", {**labels, "labels": [{**nine[0], "zh": 5}, *nine[1:]]}, None, None),
        "dim_text": ("config.json", None, {**config, "embedding_dim": "sixty-four"}, None),
        "source_list": ("config.json", None, {**config, "source_model": ["x"]}, None),
        "head_nan": ("head.npz", None, None, {"weight": np.full_like(weight, np.nan), "bias": bias}),
        "head_shape": ("head.npz", None, None, {"weight": weight[:, :10], "bias": bias}),
        "head_missing_bias": ("head.npz", None, None, {"weight": weight}),
    }
    for name, (file, lab, conf, head) in cases.items():
        folder = _tampered(tiny_export_dir, tmp_path / name, lab, conf, head)
        with pytest.raises(ModelUnavailableError) as caught:
            EmotionEngine.load(str(folder), device="cpu", precision="auto", warmup=False)
        message = caught.value.message
        assert file in message and " / " in message and str(tmp_path) not in message, (name, message)
    # the untouched export still loads
    EmotionEngine.load(str(_tampered(tiny_export_dir, tmp_path / "intact")), device="cpu", warmup=False)
