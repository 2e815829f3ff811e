"""/api/v1/runs, /stats and /batches searched with hostile parameters: typed 422s or answers, never a 500.

In-process: the runs router and the error handlers over an outputs folder with a few runs.
``to=9999-12-31`` (its end is past the calendar) and a local time in year 1 raised
``OverflowError`` / ``ValueError`` out of ``run_query.parse_time``, and a NUL in ``q`` made
FTS5 fail ("unterminated string"): each a 500 before.
"""

from __future__ import annotations

import pytest

from emotion2vec_webui.runs.catalog import run_index


@pytest.fixture
def client(settings, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from emotion2vec_webui.serving import runs_api
    from emotion2vec_webui.serving.errors import install_error_handlers

    settings.output_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI()
    app.include_router(runs_api.router)
    install_error_handlers(app)
    app.state.settings = settings
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


BAD = [
    {"to": "9999-12-31"},
    {"from": "0001-01-01T00:00:00"},
    {"from": "0001-01-01"},
    {"to": "2026-02-30"},
    {"q": "x" * 201},
    {"cursor": "!!!!"},
    {"cursor": "A" * 601},
    {"cursor": "A" * 600},  # decodes to 450 bytes: more than a key this server gives out
    {"cursor": "_w"},  # not UTF-8
    {"limit": -1},
    {"limit": 0},
    {"limit": 10**30},
    {"offset": -5},
    {"min_confidence": "nan"},
    {"min_confidence": "inf"},
    {"emotion": "happy,grumpy"},
    {"kind": "x" * 21},
    {"q": "ab\x00cd"},  # FTS5 read the NUL as the end of its query: "unterminated string", a 500
    {"speaker": "\x00"},
]
FINE = [
    {"q": "%" * 200},
    {"q": "_\\%"},
    {"q": '" OR "a'},
    {"emotion": ",,,,,"},
    {"to": "9999-12-30", "from": "1970-01-02"},
    {"offset": 1_000_000},
]


@pytest.mark.parametrize("params", BAD, ids=[str(sorted(p))[:40] for p in BAD])
def test_hostile_search_parameters_are_typed_422s(client, params):
    for path in ("/api/v1/runs", "/api/v1/stats") if "limit" not in params and "offset" not in params else (
        "/api/v1/runs",
    ):  # fmt: skip
        if "cursor" in params and path == "/api/v1/stats":
            continue
        r = client.get(path, params=params)
        assert r.status_code == 422, (path, params, r.status_code, r.text[:300])
        error = r.json()["error"]
        assert error["code"] == "bad_request" and " / " in error["message"], error


@pytest.mark.parametrize("params", FINE, ids=[repr(sorted(p.items()))[:40] for p in FINE])
def test_odd_but_valid_search_parameters_are_answered(client, params):
    r = client.get("/api/v1/runs", params=params)
    assert r.status_code == 200, (params, r.status_code, r.text[:300])
    assert r.json()["runs"] == []


def test_a_lone_surrogate_in_q_is_answered(client):
    r = client.get("/api/v1/runs?q=%ED%A0%80abc")  # not UTF-8: decoded with replacement characters
    assert r.status_code == 200 and r.json()["runs"] == [], r.text[:300]


def test_batches_with_hostile_parameters(client):
    for params in ({"cursor": "!!!!"}, {"limit": -1}, {"q": "q" * 201}):
        r = client.get("/api/v1/batches", params=params)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_request", (params, r.text[:300])
    for q in ("%_" * 100, "ab\x00cd"):
        assert client.get("/api/v1/batches", params={"q": q}).status_code == 200, q


def test_a_result_json_time_out_of_range_is_no_time():
    assert run_index._parse_time("0001-01-01T00:00:00") is None
    run_index._folder_time("outputs_00010101_000000")  # never raises (None, or a time where year 1 fits)
