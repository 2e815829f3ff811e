"""serving/downloads.py: one descriptor per download, and the one byte range it honours."""

from __future__ import annotations

import os

import pytest
from starlette.requests import Request

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.serving.downloads import RangeNotSatisfiable, byte_range, open_file_response
from tests.async_util import run_async


def _request(**headers) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


async def _body(response) -> bytes:
    return b"".join([chunk async for chunk in response.body_iterator])


def test_a_file_replaced_after_the_answer_began_is_sent_whole_as_it_was(tmp_path):
    path = tmp_path / "turns.csv"
    path.write_bytes(b"old version\n" * 100)
    (tmp_path / "new").write_bytes(b"new\n")

    async def go():
        response = await open_file_response(_request(), path, "text/csv", "turns.csv")
        os.replace(tmp_path / "new", path)  # what files.write_atomic does
        return response, await _body(response)

    response, body = run_async(go())
    assert body == b"old version\n" * 100
    assert int(response.headers["content-length"]) == len(body)


def test_one_range(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(bytes(range(256)) * 4)

    async def go(**headers):
        response = await open_file_response(_request(**headers), path, "audio/wav", "a.wav")
        return response, (await _body(response) if response.status_code < 400 else response.body)

    r, body = run_async(go(range="bytes=10-19"))
    assert r.status_code == 206 and body == (bytes(range(256)) * 4)[10:20]
    assert r.headers["content-range"] == "bytes 10-19/1024" and r.headers["content-length"] == "10"
    r, body = run_async(go(range="bytes=0-1,5-6"))  # several: the whole file
    assert r.status_code == 200 and len(body) == 1024
    r, _ = run_async(go(range="bytes=2000-"))
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */1024"


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        (None, 10, None), ("bytes=0-4", 10, (0, 4)), ("bytes=5-", 10, (5, 9)), ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)), ("bytes=3-100", 10, (3, 9)), ("BYTES = 1-2", 10, (1, 2)), ("items=0-1", 10, None),
        ("bytes=4-2", 10, None), ("bytes=a-b", 10, None), ("bytes=-", 10, None), ("bytes=1-2,4-5", 10, None),
        ("bytes=0-", 0, RangeNotSatisfiable), ("bytes=10-", 10, RangeNotSatisfiable), ("bytes=-0", 10, RangeNotSatisfiable),
    ],
)  # fmt: skip
def test_byte_range(header, size, want):
    if want is RangeNotSatisfiable:
        with pytest.raises(RangeNotSatisfiable):
            byte_range(header, size)
    else:
        assert byte_range(header, size) == want


def test_a_vanished_file_or_a_symlink_is_not_found(tmp_path):
    (tmp_path / "link").symlink_to("/etc/passwd")
    for path in (tmp_path / "gone", tmp_path / "link", tmp_path):
        with pytest.raises(E2VError) as err:
            run_async(open_file_response(_request(), path, "text/plain", "x"))
        assert err.value.code == "not_found"
