"""``audio_url``: SSRF refusals, redirects re-checked, size and time caps, and the server staying healthy.

An origin HTTP server runs in this process on 127.0.0.1 (a thread): it
serves a clip, redirects, errors, and bodies of 1 GB sent slowly. The
session's reliability server has no ``E2V_URL_ALLOW``, so every loopback,
private, link-local … address must be refused (403 ``url_forbidden``) before
any connection, within a second; the session's token server
(``token_api_server``) allows 127.0.0.1, with a 1 MB cap and short timeouts
(``TOKEN_API_SETTINGS``), so that the download paths run in seconds; the slow
downloads and per-client caps run on ``url_server`` (tests/reliability/conftest.py).
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.url_fetch import FetchPolicy, _Allow, check_url, fetch_url, forbidden_reason, redact
from tests.spec_check import check_result

GB = 1 << 30
SLOW_BODY_LIMIT_S = 15.0  # the origin stops any one slow body after this (bounds the test if the cap failed)
DRIP_LIMIT_S = 20.0  # /drip sends 1 byte a second for this long at most


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    clip = b""
    sent: dict[str, int] = {}  # path → bytes of body sent (slow bodies)

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.endswith(".wav"):
            self._send(200, self.clip, {"Content-Type": "audio/wav"})
        elif url.path == "/redirect":
            self._send(302, headers={"Location": query["to"]})
        elif url.path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif url.path == "/missing":
            self._send(404, b"no")
        elif url.path in ("/gigabyte", "/gigabyte-declared", "/trickle"):
            self._slow_body(url.path)
        elif url.path == "/drip":
            self._drip()
        elif url.path == "/backslash":  # a redirect some clients read as http://127.0.0.1:PORT/clip.wav
            self._send(302, headers={"Location": f"http:\\\\127.0.0.1:{self.server.server_address[1]}\\clip.wav"})
        elif url.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            time.sleep(6)
        else:
            self._send(404)

    def _drip(self) -> None:
        """Headers at once, then one byte a second (for DRIP_LIMIT_S at most): a download that never stalls."""
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        started = time.monotonic()
        try:
            while time.monotonic() - started < DRIP_LIMIT_S:
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(1.0)
        except OSError:
            pass
        finally:
            self.close_connection = True

    def _slow_body(self, path: str) -> None:
        """1 GB: 64 KB every 5 ms (/gigabyte; /gigabyte-declared with its Content-Length), or 1 byte every 50 ms."""
        self.send_response(200)
        if path == "/gigabyte-declared":
            self.send_header("Content-Length", str(GB))
        else:
            self.send_header("Connection", "close")  # no length: the body ends when we close
        self.end_headers()
        chunk, pause = (b"\0", 0.05) if path == "/trickle" else (b"\0" * 65536, 0.005)
        sent, started = 0, time.monotonic()
        try:
            while sent < GB and time.monotonic() - started < SLOW_BODY_LIMIT_S:
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                time.sleep(pause)
        except OSError:  # the client hung up: what we want
            pass
        finally:
            Origin.sent[path] = sent
            self.close_connection = True


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    Origin.clip = write_audio(tmp_path_factory.mktemp("origin") / "clip.wav", tone(1.0, 16000), 16000).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def allowed_server(token_api_server):
    """A server that may fetch from 127.0.0.1: 1 MB cap, 3 s per download, 1.5 s of silence at most — the
    session's token server (``TOKEN_API_SETTINGS``: ``recognize_url`` sends its token), not a process of its own."""
    return token_api_server


def recognize_url(server, url: str, **extra) -> tuple[httpx.Response, float]:
    token = getattr(server, "token", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    t0 = time.monotonic()
    r = httpx.post(server.url + "/api/v1/recognize", json={"audio_url": url, **extra}, headers=headers, timeout=60)
    return r, time.monotonic() - t0


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert " / " in r.json()["error"]["message"]  # bilingual


# -- refused by default: the reliability server has no E2V_URL_ALLOW --------------------------------

FORBIDDEN = [
    "http://169.254.169.254/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://localhost/",
    "http://LOCALHOST:8080/x.wav",
    "http://127.1/",
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "https://127.0.0.1/",
    "file:///etc/passwd",
    "ftp://example.com/clip.wav",
    "gopher://127.0.0.1:70/_GET",
    "dict://127.0.0.1:11211/stat",
    "data:audio/wav;base64,UklGRg==",
    "jar:http://127.0.0.1/x!/y",
]


@pytest.mark.parametrize("url", FORBIDDEN)
def test_refused_by_default(reliability_server, url):
    r, took = recognize_url(reliability_server, url)
    assert_error(r, 403, "url_forbidden")
    assert took < 1.0, took


def test_the_origin_itself_is_refused_without_the_allow_list(reliability_server, origin):
    r, took = recognize_url(reliability_server, origin.base + "/clip.wav")
    assert_error(r, 403, "url_forbidden")
    assert took < 1.0, took
    assert "127.0.0.1" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"audio_url": "http://user:pw@example.com/a.wav"}, 422, "bad_request"),
        ({"audio_url": "http:///nohost"}, 422, "bad_request"),
        ({"audio_url": "http://example.com/" + "a" * 5000}, 422, "bad_request"),
        ({"audio_url": "http://example.com/a.wav", "audio_base64": "UklGRg=="}, 422, "bad_request"),
        ({"audio_url": "http://example.com/a.wav", "channels": "sideways"}, 422, "bad_request"),
    ],
)
def test_malformed_url_requests(reliability_server, body, status, code):
    r = httpx.post(reliability_server.url + "/api/v1/recognize", json=body, timeout=30)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text


# -- allowed: E2V_URL_ALLOW=127.0.0.1 --------------------------------------------------------------


def test_allowed_clip_gives_a_complete_run(allowed_server, origin):
    r, _ = recognize_url(allowed_server, origin.base + "/clip.wav?sig=SECRET", channels="left")
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body)
    assert body["audio"]["source_name"] == "clip.wav"
    assert body["audio"]["source_url"] == origin.base + "/clip.wav"  # the query (a signature) is not kept
    assert body["audio"]["channels"] == "left"
    folder = allowed_server.outputs / body["run_id"]
    for name in ("result.json", "processed_audio.wav", "run.log"):
        assert (folder / name).is_file(), name
    log = (folder / "run.log").read_text("utf-8")
    assert "fetched http://127.0.0.1" in log and "SECRET" not in log


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://[::1]/x.wav", "http://10.1.2.3/", "file:///etc/passwd",
     "gopher://127.0.0.1:70/", "http://[::ffff:169.254.169.254]/"],
)  # fmt: skip
def test_allowed_host_redirecting_to_a_forbidden_one(allowed_server, origin, target):
    r, took = recognize_url(allowed_server, origin.base + "/redirect?to=" + urllib.parse.quote(target, safe=""))
    assert_error(r, 403, "url_forbidden")
    assert took < 2.0, took


def test_redirect_to_an_allowed_clip_is_followed(allowed_server, origin):
    r, _ = recognize_url(allowed_server, origin.base + "/redirect?to=" + urllib.parse.quote("/clip.wav"))
    assert r.status_code == 200, r.text
    assert r.json()["audio"]["source_url"].endswith("/clip.wav")


def test_redirect_loop_is_cut(allowed_server, origin):
    r, _ = recognize_url(allowed_server, origin.base + "/loop")
    assert_error(r, 502, "url_unreachable")
    assert "redirect" in r.json()["error"]["message"]


def test_http_error_status_is_unreachable(allowed_server, origin):
    r, _ = recognize_url(allowed_server, origin.base + "/missing")
    assert_error(r, 502, "url_unreachable")
    assert "404" in r.json()["error"]["message"]


def test_closed_port_is_unreachable(allowed_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    r, _ = recognize_url(allowed_server, f"http://127.0.0.1:{port}/a.wav")
    assert_error(r, 502, "url_unreachable")


@pytest.mark.parametrize(
    ("path", "status", "code", "max_s"),
    [
        ("/gigabyte", 413, "file_too_large", 3.0),  # no length given: cut at the 1 MB cap while streaming
        ("/gigabyte-declared", 413, "file_too_large", 1.5),  # 1 GB declared: refused before the body
        ("/trickle", 504, "url_timeout", 5.0),  # 20 bytes a second: cut at the 3 s download limit
        ("/stall", 504, "url_timeout", 4.0),  # headers, then silence: cut at the 1.5 s read timeout
    ],
)
def test_big_or_slow_bodies_are_cut_and_the_server_stays_healthy(allowed_server, origin, path, status, code, max_s):
    Origin.sent.pop(path, None)
    r, took = recognize_url(allowed_server, origin.base + path)
    assert_error(r, status, code)
    assert took < max_s, took
    if path == "/gigabyte":
        deadline = time.monotonic() + 5
        while path not in Origin.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Origin.sent.get(path, GB) < 64 * 1024 * 1024  # the server hung up near 1 MB, not at 1 GB
    assert httpx.get(allowed_server.url + "/healthz", timeout=5).status_code == 200
    ok, _ = recognize_url(allowed_server, origin.base + "/clip.wav")
    assert ok.status_code == 200, ok.text


def test_backslash_redirect_is_a_typed_error(allowed_server, origin):
    """``Location: http:\\\\127.0.0.1:PORT\\clip.wav`` made httpx raise InvalidURL, which left as a 500."""
    r, _ = recognize_url(allowed_server, origin.base + "/backslash")
    assert_error(r, 502, "url_unreachable")
    assert "redirect" in r.json()["error"]["message"].lower()


def test_the_server_does_not_fetch_itself(allowed_server):
    """127.0.0.1 is allowed, but not the port the server listens on (its /metrics, its runs)."""
    for path in ("/metrics", "/api/v1/runs", "/healthz"):
        r, took = recognize_url(allowed_server, f"http://127.0.0.1:{allowed_server.port}{path}")
        assert_error(r, 403, "url_forbidden")
        assert took < 2.0, took


# -- slow downloads hold no admission slot; per-client caps (E2V_MAX_QUEUE=4) -----------------------


def _client(address: str, timeout: float = 60) -> httpx.Client:
    """A client whose connections come from ``address`` (127.0.0.x: one loopback address per simulated client)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=timeout)


def _post_url(address: str, server, url: str) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    with _client(address) as c:
        r = c.post(server.url + "/api/v1/recognize", json={"audio_url": url})
    return r, time.monotonic() - t0


def _upload(address: str, server, data: bytes) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    with _client(address) as c:
        r = c.post(
            server.url + "/api/v1/recognize", files={"file": ("p.wav", data)}, data={"extract_embedding": "false"}
        )
    return r, time.monotonic() - t0


def _in_threads(calls, stagger_s: float = 0.0):
    """Start each call in a thread (``stagger_s`` apart: each request's brief parse has its admission slot back)."""
    results: list = [None] * len(calls)

    def run(i, fn):
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    return threads, results


def test_slow_downloads_leave_a_probe_answered(url_server, origin):
    """Five 1-byte-a-second downloads (five clients) used to hold all 5 slots for the whole download."""
    threads, drips = _in_threads([lambda a=f"127.0.0.{i}": _post_url(a, url_server, origin.base + "/drip")
                                  for i in range(2, 7)])  # fmt: skip
    time.sleep(1.0)  # the five are downloading
    probe, took = _upload("127.0.0.1", url_server, Origin.clip)
    assert probe.status_code == 200, probe.text
    assert took < 5.0, took
    for t in threads:
        t.join(60)
    for r, _ in drips:
        assert_error(r, 504, "url_timeout")


def test_a_trickle_is_cut_by_the_minimum_rate(url_server, origin):
    """1 byte a second never stalls (E2V_URL_READ_TIMEOUT_S) and would run to E2V_URL_TIMEOUT_S (60 s)."""
    from tests.reliability.conftest import URL_READ_TIMEOUT_S

    r, took = recognize_url(url_server, origin.base + "/drip")
    assert_error(r, 504, "url_timeout")
    assert "E2V_URL_MIN_RATE_KB" in r.json()["error"]["message"]
    assert took < URL_READ_TIMEOUT_S + 3, took


def test_downloads_are_bounded_per_client_and_in_all(url_server, origin):
    from tests.reliability.conftest import URL_MAX_CONCURRENT

    # One client, three downloads: the third is over E2V_URL_MAX_PER_CLIENT (2) at once.
    threads, results = _in_threads([lambda: _post_url("127.0.0.20", url_server, origin.base + "/drip")] * 3, 0.3)
    for t in threads:
        t.join(60)
    refused = [(r, took) for r, took in results if r.status_code == 429]
    assert len(refused) == 1, [r.status_code for r, _ in results]
    assert_error(refused[0][0], 429, "rate_limited")
    assert "E2V_URL_MAX_PER_CLIENT" in refused[0][0].json()["error"]["message"]
    assert refused[0][0].headers.get("retry-after") and refused[0][1] < 2.0
    # One more client than E2V_URL_MAX_CONCURRENT downloads: one is answered 503 at once.
    n = URL_MAX_CONCURRENT + 1
    threads, results = _in_threads([lambda a=f"127.0.0.{30 + i}": _post_url(a, url_server, origin.base + "/drip")
                                    for i in range(n)], 0.2)  # fmt: skip
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r, _ in results)
    assert statuses.count(503) == 1 and statuses.count(504) == n - 1, statuses
    busy = next(r for r, _ in results if r.status_code == 503)
    assert_error(busy, 503, "overloaded")
    assert "E2V_URL_MAX_CONCURRENT" in busy.json()["error"]["message"]
    assert busy.headers.get("retry-after")


def test_one_client_cannot_take_every_slot(url_server):
    """E2V_MAX_QUEUE=4: a client holding its share (1) gets 429 for more; another client is served."""
    threads, held = _in_threads([lambda: _upload("127.0.0.1", url_server, b"E2V-TEST:hang\n" + b"\0" * 64)])
    time.sleep(1.0)  # its decode hangs until E2V_DECODE_TIMEOUT_S: it holds a slot
    greedy, took = _upload("127.0.0.1", url_server, Origin.clip)
    assert_error(greedy, 429, "rate_limited")
    assert "E2V_MAX_PER_CLIENT" in greedy.json()["error"]["message"]
    assert greedy.headers.get("retry-after") and took < 2.0, took
    other, _ = _upload("127.0.0.2", url_server, Origin.clip)
    assert other.status_code == 200, other.text
    for t in threads:
        t.join(60)
    assert held[0][0].status_code == 422, held[0][0].text  # the hung decode: audio_too_large_decoded


# -- the rules, in process ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("127.0.0.1", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:8.8.8.8", False),
        ("fd00::1", True),
        ("ff02::1", True),
        ("100.100.100.200", True),
        ("192.0.2.1", True),
        ("2001:db8::1", True),
    ],
)
def test_forbidden_reason(address, refused):
    assert (forbidden_reason(address) is not None) == refused


def test_allow_list_forms():
    allow = _Allow(("127.0.0.1", "10.0.0.0/8", "Media.Example.com", "*.cdn.example", "[::1]"))
    import ipaddress

    ip = ipaddress.ip_address
    assert allow.address(ip("10.9.8.7"), 80) and allow.address(ip("::ffff:127.0.0.1"), 443)
    assert allow.address(ip("::1"), 8080) and not allow.address(ip("192.168.0.1"), 80)
    assert allow.host("media.example.com.", 80) and allow.host("a.cdn.example", 80)
    assert not allow.host("cdn.example.org", 80) and not allow.host("cdn.example", 80)


def test_fetching_off_refuses_everything():
    with pytest.raises(E2VError) as err:
        check_url("https://example.com/a.wav", FetchPolicy(enabled=False))
    assert err.value.code == "url_forbidden" and "E2V_URL_FETCH" in err.value.message


def test_every_answer_is_checked_and_looked_up_once(monkeypatch, origin):
    """A name with one public and one loopback answer is refused; an allowed name is looked up exactly once."""
    real = socket.getaddrinfo
    calls: list[str] = []
    port = origin.server_address[1]

    def fake(host, *args, **kwargs):
        calls.append(host)
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]  # fmt: skip
        if host == "clips.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(E2VError) as err:
        fetch_url(f"http://rebind.test:{port}/clip.wav", FetchPolicy())
    assert err.value.code == "url_forbidden" and "127.0.0.1" in err.value.message
    calls.clear()
    fetched = fetch_url(f"http://clips.test:{port}/clip.wav", FetchPolicy(allow=("clips.test",)))
    assert fetched.data == Origin.clip and fetched.address == "127.0.0.1"
    assert calls.count("clips.test") == 1  # connected to the checked address: no second lookup


def test_redact_drops_secrets():
    assert redact("https://u:p@host.example:8443/a/b.wav?X-Amz-Signature=s#f") == "https://host.example:8443/a/b.wav"


def test_batch_list_file_takes_urls(tmp_path, origin):
    from emotion2vec_webui.jobs.inputs import discover_inputs, item_source
    from emotion2vec_webui.runs.inputs.url_fetch import AudioUrl

    wav = write_audio(tmp_path / "local.wav", tone(0.5, 16000), 16000)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{origin.base}/clip.wav\nlocal.wav\nftp://example.com/x.wav\n", "utf-8")
    items = discover_inputs(listing)
    assert [it.file for it in items] == [f"{origin.base}/clip.wav", str(wav), "ftp://example.com/x.wav"]
    assert isinstance(item_source(items[0])[0], AudioUrl) and item_source(items[1]) == (str(wav), "local.wav")
    assert Path(items[1].file).is_file()


def test_batch_runs_urls_beside_files(origin, engine, settings, tmp_path):
    """A list file mixing a URL (allowed), a forbidden URL and a local file: two runs and one url_forbidden row."""
    import dataclasses

    from emotion2vec_webui.jobs.batch import BatchOptions, classify_group, open_batch, run_local
    from emotion2vec_webui.jobs.inputs import discover_inputs
    from emotion2vec_webui.runs.recognize import RecognizeOptions

    write_audio(tmp_path / "local.wav", tone(0.8, 16000, channels=2), 16000)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{origin.base}/clip.wav\nhttp://169.254.169.254/x.wav\nlocal.wav\n", "utf-8")
    items = discover_inputs(listing)
    options = BatchOptions(RecognizeOptions(extract_embedding=False, channels="left"), batch_size=2, workers=1)  # the mono clip has a left channel too
    summary, todo = open_batch(items, tmp_path / "batch", resume=False, manifest={})
    s = dataclasses.replace(settings, output_dir=summary.folder, url_allow=("127.0.0.1",))
    rows: list[dict] = []
    run_local(todo, summary, s, options, lambda pairs: classify_group(engine, pairs, s, options), rows.append)
    summary.close()
    by_file = {r["file"]: r for r in rows}
    assert by_file["http://169.254.169.254/x.wav"]["error_code"] == "url_forbidden"
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2, rows
    import json

    results = [json.loads(p.read_text("utf-8")) for p in summary.folder.rglob("result.json")]
    assert sorted(r["audio"]["source_url"] or "" for r in results) == ["", f"{origin.base}/clip.wav"]
    stereo = [r for r in results if r["audio"]["original_channels"] == 2]
    assert stereo and stereo[0]["audio"]["channels"] == "left" and stereo[0]["audio"]["channel_index"] == 0
    assert all(r["audio"]["channel_index"] == 0 for r in results)
