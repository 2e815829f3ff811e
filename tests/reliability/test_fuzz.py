"""Decoder fuzz over HTTP: 400+ malformed files, each a 4xx with a code or a valid 200; never a 5xx."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import httpx

from emotion2vec_webui.runs.storage import RUN_ID_RE
from emotion2vec_webui.serving.errors import HTTP_STATUS
from tests.reliability.conftest import MAX_DURATION_S
from tests.reliability.fuzz_corpus import corpus
from tests.spec_check import check_result

ALLOWED_RSS_GROWTH = 300 * 1024 * 1024


def _post(client: httpx.Client, label: str, data: bytes) -> tuple[str, int, dict]:
    r = client.post("/api/v1/recognize", files={"file": ("fuzz.wav", data)}, data={"extract_embedding": "false"})
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:200]}
    return label, r.status_code, body


def test_malformed_inputs_never_crash_the_server(reliability_server, tmp_path):
    cases = corpus(tmp_path, MAX_DURATION_S)
    assert len(cases) >= 300
    srv = reliability_server
    with httpx.Client(base_url=srv.url, timeout=120) as client:
        for label, data in cases[:20]:  # warm-up, so that RSS growth excludes first-use allocations
            _post(client, label, data)
        rss_before = srv.rss_bytes()
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda case: _post(client, *case), cases))
        rss_after = srv.rss_bytes()
        ready = client.get("/readyz")

    counts: collections.Counter = collections.Counter()
    failures = []
    for label, status, body in outcomes:
        code = body.get("error", {}).get("code") if isinstance(body.get("error"), dict) else None
        counts[f"{status} {code or 'ok'}"] += 1
        if status == 200:
            try:
                check_result(body)
                assert RUN_ID_RE.match(body["run_id"])
                folder = srv.outputs / body["run_id"]
                assert {p.name for p in folder.iterdir()} >= {"result.json", "processed_audio.wav", "run.log"}
            except AssertionError as exc:
                failures.append(f"{label}: 200 with a bad result ({exc})")
        elif not (400 <= status < 500 and code and HTTP_STATUS.get(code) == status):
            failures.append(f"{label}: {status} {body}")

    print(f"\nfuzz: {len(cases)} malformed or odd inputs")
    for key, n in sorted(counts.items()):
        print(f"  {key:28s} {n}")
    print(f"  server RSS {rss_before / 2**20:.0f} MiB → {rss_after / 2**20:.0f} MiB")
    assert not failures, "\n".join(failures[:20])
    assert not [k for k in counts if k.startswith("5")]
    assert srv.alive() and ready.status_code == 200, ready.text
    assert rss_after - rss_before < ALLOWED_RSS_GROWTH
    assert not list(srv.outputs.glob(".tmp-*")), "temporary run folders were left behind"
    assert "Traceback" not in srv.log_tail(200_000), srv.log_tail()
