"""``E2V_URL_ALLOW``'s grammar (config.parse_allow_entry) and how runs/inputs/url_fetch.py matches its entries.

Entries: a host name, ``*.suffix`` (DNS names only), an IP address or CIDR, each with an optional
``:port`` (IPv6 in brackets: ``[::1]:8080``). A malformed entry stops the start with one plain line.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import subprocess
import sys
import threading

import pytest

from emotion2vec_webui.config import load_settings, parse_allow_entry
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.url_fetch import FetchPolicy, _Allow, fetch_url, serving_at

IP = ipaddress.ip_address


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("127.0.0.1", ("net", "127.0.0.1/32", None)),
        ("127.0.0.1:18081", ("net", "127.0.0.1/32", 18081)),
        ("10.0.0.0/8", ("net", "10.0.0.0/8", None)),
        ("10.0.0.0/8:8080", ("net", "10.0.0.0/8", 8080)),
        ("::1", ("net", "::1/128", None)),
        ("[::1]", ("net", "::1/128", None)),
        ("[::1]:8080", ("net", "::1/128", 8080)),
        ("[fd00::/8]:443", ("net", "fd00::/8", 443)),
        ("Media.LAN.", ("name", "media.lan", None)),
        ("media.lan:9000", ("name", "media.lan", 9000)),
        ("localhost", ("name", "localhost", None)),
        ("*.cdn.example", ("suffix", "cdn.example", None)),
        ("*.cdn.example:443", ("suffix", "cdn.example", 443)),
        (" clips.test ", ("name", "clips.test", None)),
    ],
)
def test_entries_parse(entry, parsed):
    e = parse_allow_entry(entry)
    assert (e.kind, e.target, e.port) == parsed


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1:",  # empty port
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "127.0.0.1:http",
        "media.lan:80:81",
        "::g",
        "1.2.3.4.5:80",
        "[::1",
        "[::1]x",
        "[media.lan]:80",
        "10.0.0.0/33",
        "*.1",  # a suffix that is a number matches addresses as text: refused
        "*.0.1",
        "*.0x1",
        "*.",
        "*",
        "a.*.example",
        "2130706433",  # odd spellings of addresses: write them as addresses
        "0x7f.1",
        "127.1",
        "http://media.lan",
        "media lan",
        "media_lan/x",
        "-bad.example",
        "a" * 64 + ".example",
    ],
)
def test_malformed_entries_are_refused(entry):
    with pytest.raises(ValueError) as err:
        parse_allow_entry(entry)
    message = str(err.value)
    assert "E2V_URL_ALLOW" in message and " / " in message and "\n" not in message


def test_load_settings_refuses_a_malformed_entry_in_one_line(monkeypatch):
    monkeypatch.setenv("E2V_URL_ALLOW", "127.0.0.1, *.1")
    with pytest.raises(SystemExit) as err:
        load_settings()
    assert "*.1" in str(err.value.code) and "\n" not in str(err.value.code)


def test_serve_with_a_malformed_entry_stops_with_one_line(tmp_path):
    env = {"E2V_URL_ALLOW": "127.0.0.1:18081,media.lan:99999", "E2V_OUTPUT_DIR": str(tmp_path / "o"),
           "E2V_LOG_DIR": str(tmp_path / "l"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "emotion2vec_webui", "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "media.lan:99999" in lines[0] and " / " in lines[0], done.stderr


def test_an_entry_with_a_port_allows_that_port_only():
    allow = _Allow(("127.0.0.1:18081", "[::1]:8080", "media.lan:9000", "*.cdn.example:443", "10.0.0.0/8"))
    assert allow.address(IP("127.0.0.1"), 18081) and not allow.address(IP("127.0.0.1"), 18082)
    assert allow.address(IP("::ffff:127.0.0.1"), 18081)
    assert allow.address(IP("::1"), 8080) and not allow.address(IP("::1"), 80)
    assert allow.host("media.lan", 9000) and not allow.host("media.lan", 80)
    assert allow.host("a.cdn.example", 443) and not allow.host("a.cdn.example", 80)
    assert allow.address(IP("10.1.2.3"), 1) and allow.address(IP("10.1.2.3"), 65535)


def test_names_never_match_addresses():
    """``*.suffix`` and name entries match DNS names; an address, however spelled, is matched by IP entries only."""
    allow = _Allow(("*.example", "localhost", "*.localhost"))
    assert allow.host("a.example", 80) and allow.host("localhost", 80) and allow.host("x.localhost", 80)
    for spelling in ("127.0.0.1", "0x7f.1", "127.1", "2130706433", "127.0.0.0x1", "::1", "[::1]"):
        assert not allow.host(spelling, 80), spelling


@pytest.fixture
def origin():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"RIFF")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_port_entry_is_what_the_fetch_obeys(origin):
    assert fetch_url(f"http://127.0.0.1:{origin}/a.wav", FetchPolicy(allow=(f"127.0.0.1:{origin}",))).data == b"RIFF"
    with pytest.raises(E2VError) as err:
        fetch_url(f"http://127.0.0.1:{origin}/a.wav", FetchPolicy(allow=(f"127.0.0.1:{origin + 1}",)))
    assert err.value.code == "url_forbidden"


def test_the_servers_own_port_needs_an_entry_naming_it(origin):
    """With 127.0.0.1 (any port) allowed, the port this server listens on is still refused; 127.0.0.1:PORT allows it."""
    with serving_at("127.0.0.1", origin):
        with pytest.raises(E2VError) as err:
            fetch_url(f"http://127.0.0.1:{origin}/metrics", FetchPolicy(allow=("127.0.0.1",)))
        assert err.value.code == "url_forbidden" and "itself" in err.value.message
        with pytest.raises(E2VError):
            fetch_url(f"http://localhost:{origin}/metrics", FetchPolicy(allow=("localhost",)))
        ok = fetch_url(f"http://127.0.0.1:{origin}/a.wav", FetchPolicy(allow=(f"127.0.0.1:{origin}",)))
        assert ok.data == b"RIFF"
    assert fetch_url(f"http://127.0.0.1:{origin}/a.wav", FetchPolicy(allow=("127.0.0.1",))).data == b"RIFF"


def test_a_wildcard_listener_covers_every_local_address(origin):
    with serving_at("0.0.0.0", origin):
        for host in ("127.0.0.1", "127.0.0.2"):
            with pytest.raises(E2VError) as err:
                fetch_url(f"http://{host}:{origin}/a.wav", FetchPolicy(allow=("127.0.0.0/8",)))
            assert err.value.code == "url_forbidden"
    with socket.socket() as s:  # another port on the same address is not the server
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
    with serving_at("0.0.0.0", other):
        assert fetch_url(f"http://127.0.0.1:{origin}/a.wav", FetchPolicy(allow=("127.0.0.1",))).data == b"RIFF"
