"""Download an ``audio_url`` safely: http(s) only, SSRF-safe, bounded in size and time.

One concept: the guard against server-side request forgery is the address
check, the connection that uses exactly the checked address, and the client
loop that re-checks every redirect; apart, each half would be unsafe to use.

Every face that takes a URL (REST ``audio_url``, a batch list file's
``https://…`` lines, the UI's URL box, ``recognize URL``) hands an
:class:`AudioUrl` to :meth:`recognize.Recognition.decode`, which calls
:func:`fetch_url` and decodes the bytes in the guarded decoder like an upload.

What is refused, and how:

* schemes other than ``http``/``https`` (``file:``, ``ftp:``, ``gopher:``, …)
  and URLs with credentials → ``url_forbidden`` (403) / ``bad_request``;
  ``E2V_URL_FETCH=off`` refuses every URL (``url_forbidden``);
* **server-side request forgery**: we resolve the host ourselves, once per
  connection, inside the connection step (:class:`_PinnedBackend`), check
  *every* A/AAAA answer and connect to a checked address — there is no second
  DNS lookup for a rebinding resolver to answer differently. An address is
  refused unless it is global unicast: loopback, private, link-local
  (169.254.0.0/16: cloud metadata), shared (100.64/10), multicast,
  unspecified, reserved, and the IPv6 equivalents, with IPv4 embedded in IPv6
  (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64 ``64:ff9b::/96``) checked as
  the IPv4 address it carries. Odd spellings (``2130706433``, ``0x7f.1``,
  ``017700000001``) resolve to the address they mean, which is what is
  checked. ``E2V_URL_ALLOW`` (host names, ``*.suffix`` names, IPs and CIDRs,
  each with an optional ``:port``; parsed by ``config.parse_allow_entry``)
  lets chosen hosts or networks through; names never match an address
  however spelled. The server's own listening port (:func:`serving_at`) is
  refused unless an entry names that port;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each new URL
  checked again (scheme), and its connection checked again (address);
* the body streams into memory with a cap of ``E2V_MAX_UPLOAD_MB`` (a larger
  ``Content-Length`` is refused before reading) → ``file_too_large`` (413);
  ``Accept-Encoding: identity`` and raw reads: no decompression bomb;
* time: ``E2V_URL_CONNECT_TIMEOUT_S`` (lookup and connect, per hop),
  ``E2V_URL_READ_TIMEOUT_S`` (the longest silence), ``E2V_URL_TIMEOUT_S``
  (the whole download: every socket wait is cut to what is left), and
  ``E2V_URL_MIN_RATE_KB``: once ``E2V_URL_READ_TIMEOUT_S`` has passed the
  download must average that rate, so a server trickling one byte a second is
  cut early → ``url_timeout`` (504);
* anything else (no such host, refused connection, an HTTP error status, a
  redirect loop, a redirect to a malformed URL) → ``url_unreachable`` (502).

How many downloads a server runs at once is :class:`DownloadSlots`' business
(REST and the UI's URL box; batch and the CLI fetch without it).

Why httpx (already a dependency, through its transport library httpcore):
httpcore lets a client take a custom *network backend*, the one place where
the socket is opened. Ours resolves, checks and connects to the checked
address, while TLS still verifies the certificate against the URL's host name
and sends it as SNI, and the ``Host`` header stays the URL's — no IP-with-Host
header tricks. urllib3 could do the same only by connecting to the IP and
patching SNI and hostname checks in by hand. Environment proxies are ignored
(``trust_env=False``): a proxy would do its own, unchecked, lookup.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
import math
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import httpcore
import httpx

from emotion2vec_webui import __version__
from emotion2vec_webui.config import is_address_spelling, parse_allow_entry
from emotion2vec_webui.errors import E2VError, OverloadedError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_URL_CHARS = 4096
_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# DNS lookups run here so that a slow resolver is bounded by the connect timeout (getaddrinfo has none).
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="e2v-dns")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class AudioUrl:
    """An input given as a URL (as opposed to a path or bytes): :meth:`Recognition.decode` downloads it."""

    url: str

    def __str__(self) -> str:
        return redact(self.url)


@dataclass(frozen=True)
class FetchPolicy:
    enabled: bool = True  # E2V_URL_FETCH
    allow: tuple[str, ...] = ()  # E2V_URL_ALLOW: host names, *.suffix names, IPs, CIDRs
    max_bytes: int = 100 * 1024 * 1024  # E2V_MAX_UPLOAD_MB
    timeout_s: float = 60.0  # E2V_URL_TIMEOUT_S: the whole download
    connect_timeout_s: float = 5.0  # E2V_URL_CONNECT_TIMEOUT_S
    read_timeout_s: float = 15.0  # E2V_URL_READ_TIMEOUT_S; also the grace before min_rate applies
    min_rate: float = 8 * 1024  # E2V_URL_MIN_RATE_KB, in bytes/s: the least average once read_timeout_s passed (0: off)
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings) -> FetchPolicy:
        return cls(
            enabled=settings.url_fetch,
            allow=tuple(settings.url_allow),
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.url_timeout_s,
            connect_timeout_s=settings.url_connect_timeout_s,
            read_timeout_s=settings.url_read_timeout_s,
            min_rate=settings.url_min_rate_kb * 1024,
        )


@dataclass(frozen=True)
class Fetched:
    data: bytes
    name: str  # a file name for people: the last path segment of the final URL
    url: str  # the final URL, without credentials, query or fragment (safe to log and keep)
    address: str  # the IP address the body came from
    redirects: int
    seconds: float


def is_url(text: str) -> bool:
    """True for ``scheme://…`` (any scheme: a refused one should say so, not "no such file")."""
    return bool(_SCHEME_RE.match(str(text).strip()))


def redact(url: str) -> str:
    """``url`` without user info, query or fragment (signed URLs carry secrets there)."""
    try:
        parts = urllib.parse.urlsplit(str(url).strip())
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:300]
    except ValueError:
        return str(url)[:80]


def forbidden_reason(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` may not be fetched from by default (None: a global unicast address)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata lives there)"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attr, reason in checks:
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def _port_matches(entry_port: int | None, port: int, exact: bool) -> bool:
    return entry_port == port if exact else entry_port in (None, port)


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip


class _Allow:
    """``E2V_URL_ALLOW`` (parsed by ``config.parse_allow_entry``), matched against a connection's host and port.

    Names and ``*.suffix`` match DNS names only, never an address however spelled;
    an entry with a port matches that port only. ``exact``: only entries that name
    the port count (the server's own port needs one).
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        parsed = [parse_allow_entry(entry) for entry in entries if entry.strip()]
        self.nets = [(ipaddress.ip_network(e.target), e.port) for e in parsed if e.kind == "net"]
        self.names = [(e.kind, e.target, e.port) for e in parsed if e.kind != "net"]

    def host(self, host: str, port: int, exact: bool = False) -> bool:
        host = host.strip("[]").lower().rstrip(".")
        if is_address_spelling(host):
            return False
        return any(
            _port_matches(p, port, exact) and (host == name if kind == "name" else host.endswith("." + name))
            for kind, name, p in self.names
        )

    def address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, exact: bool = False) -> bool:
        ip = _plain(ip)
        return any(ip.version == net.version and ip in net and _port_matches(p, port, exact) for net, p in self.nets)


# -- the server's own address: never fetched unless an entry names that host:port ------------------------
_serving: list[tuple[frozenset, int]] = []  # (addresses, port) this process serves on (serving_at)


@contextlib.contextmanager
def serving_at(host: str, port: int):
    """While the block runs, ``host:port`` is this server's own address (``serve`` wraps the server in it).

    A fetch from that port at that address (at any local address when ``host`` is
    0.0.0.0 or ::) is refused unless ``E2V_URL_ALLOW`` names the port: an allowed
    ``localhost`` must not let a URL read the server's own ``/metrics`` or runs.
    """
    try:
        addresses = frozenset({_plain(ipaddress.ip_address(host.strip("[]")))})
    except ValueError:  # a name (localhost): its addresses now
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError:
            infos = []
        addresses = frozenset(_plain(ipaddress.ip_address(i[4][0].split("%", 1)[0])) for i in infos)
    entry = (addresses, int(port))
    _serving.append(entry)
    try:
        yield
    finally:
        _serving.remove(entry)


def _is_own(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    ip = _plain(ip)
    for addresses, own_port in list(_serving):
        if own_port != port:
            continue
        if ip in addresses or (any(a.is_unspecified for a in addresses) and _is_local(ip)):
            return True
    return False


def _is_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is an address of this machine (binding to it works only then)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
        return True
    except OSError:
        return False


class _Guard:
    """Resolves and checks a host for one fetch; remembers the address it let through."""

    def __init__(self, policy: FetchPolicy, started: float) -> None:
        self.policy, self.started, self.deadline = policy, started, started + policy.timeout_s
        self.allow = _Allow(policy.allow)
        self.address = ""
        self.received = 0  # bytes read from the network, headers included
        self.too_slow = False  # a read was cut by the minimum rate

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def rate_left(self) -> float:
        """Seconds until the download falls below ``min_rate`` on average (counted after the first ``read_timeout_s``)."""
        if self.policy.min_rate <= 0:
            return math.inf
        return self.started + self.policy.read_timeout_s + self.received / self.policy.min_rate - time.monotonic()

    def resolve(self, host: str, port: int) -> list[str]:
        host = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._lookup(host, port)
        for ip in addresses:
            reason = forbidden_reason(ip)
            where = f"{ip} is" if host == str(ip) else f"{host[:100]} resolves to {ip},"
            if reason and not self.allow.host(host, port) and not self.allow.address(ip, port):
                raise E2VError(
                    "url_forbidden",
                    f"{where} a {reason} address; the server does not fetch from it on port {port} "
                    "(E2V_URL_ALLOW lists hosts and networks that may be reached). / "
                    f"{host[:100]} 指向受限地址 {ip}，服务器拒绝访问。",
                )
            if _is_own(ip, port) and not (self.allow.host(host, port, True) or self.allow.address(ip, port, True)):
                raise E2VError(
                    "url_forbidden",
                    f"{where} this server itself (port {port}); it fetches from itself only when E2V_URL_ALLOW "
                    f"names that host:port. / {host[:100]}:{port} 是本服务器自身的地址，服务器不会访问自己。",
                )
        return [str(ip) for ip in addresses]

    def _lookup(self, host: str, port: int) -> list:
        wait = min(self.policy.connect_timeout_s, self.left())
        if wait <= 0:
            raise _timeout(self.policy, total=True)
        future = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            raise _timeout(self.policy, total=self.left() <= 0, what=f"looking up {host}") from None
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise E2VError("url_unreachable", f"Cannot resolve {host[:100]}: {exc}. / 无法解析主机名。") from None
        seen: dict[str, None] = {}
        for info in infos:
            seen.setdefault(info[4][0].split("%", 1)[0], None)
        if not seen:
            raise E2VError("url_unreachable", f"{host[:100]} has no address. / 主机名没有地址。")
        return [ipaddress.ip_address(a) for a in seen]


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every wait is cut to the time left for the whole download."""

    def __init__(self, inner: httpcore.NetworkStream, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    def _wait(self, timeout: float | None) -> tuple[float, bool]:
        """How long the next socket wait may last, and whether the minimum rate is what bounds it."""
        left, rate_left = self.guard.left(), self.guard.rate_left()
        if left <= 0:
            raise httpcore.ReadTimeout("the whole download took too long")
        if rate_left <= 0:
            self.guard.too_slow = True
            raise httpcore.ReadTimeout("slower than the minimum rate")
        wait = left if timeout is None else min(timeout, left)
        return min(wait, rate_left), rate_left < wait

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wait, by_rate = self._wait(timeout)
        try:
            data = self.inner.read(max_bytes, wait)
        except httpcore.ReadTimeout:
            self.guard.too_slow = self.guard.too_slow or by_rate
            raise
        self.guard.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._wait(timeout)[0])

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        # server_hostname is the URL's host (httpcore passes it): the certificate is checked against it, SNI sends it.
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, self._wait(timeout)[0]), self.guard)

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class _PinnedBackend(httpcore.SyncBackend):
    """Opens every connection to an address it has just resolved and checked (see the module docstring)."""

    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last: Exception | None = None
        for address in self.guard.resolve(host, port):
            wait = self.guard.left() if timeout is None else min(timeout, self.guard.left())
            if wait <= 0:
                break
            try:
                stream = super().connect_tcp(address, port, wait, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            self.guard.address = address
            return _DeadlineStream(stream, self.guard)
        if last is None:
            raise httpcore.ConnectTimeout("no time left to connect")
        raise last

    def connect_unix_socket(self, *args, **kwargs):  # never: only TCP
        raise httpcore.ConnectError("unix sockets are not fetched")


class _Transport(httpx.BaseTransport):
    """httpx over an httpcore pool that uses :class:`_PinnedBackend` (one fetch, HTTP/1.1, no retries)."""

    def __init__(self, guard: _Guard) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), network_backend=_PinnedBackend(guard), retries=0, max_connections=2
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        response = self._pool.handle_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


@functools.lru_cache(maxsize=1)
def _ssl_context():
    return httpx.create_ssl_context()  # certifi's roots; loading them takes ~0.1 s, so once


class _Body(httpx.SyncByteStream):
    def __init__(self, stream) -> None:
        self._stream = stream

    def __iter__(self):
        yield from self._stream

    def close(self) -> None:
        if hasattr(self._stream, "close"):
            self._stream.close()


def check_url(url: str, policy: FetchPolicy | None = None) -> httpx.URL:
    """Parse ``url`` and refuse what is never fetched (before any network traffic).

    Raises:
        E2VError: ``url_forbidden`` (fetching off, a scheme other than http/https),
            ``bad_request`` (not a URL, no host, credentials in it, too long).
    """
    text = str(url).strip()
    if policy is not None and not policy.enabled:
        raise E2VError(
            "url_forbidden", "This server does not fetch URLs (E2V_URL_FETCH=off). / 本服务器已关闭 URL 下载。"
        )
    if len(text) > MAX_URL_CHARS:
        raise E2VError("bad_request", f"The URL is longer than {MAX_URL_CHARS} characters. / URL 过长。")
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in ("http", "https"):
        raise E2VError(
            "url_forbidden",
            f"Only http and https URLs are fetched, not {scheme[:20] + ':' if scheme else text[:40]!r}. / "
            "只支持 http 和 https 地址。",
        )
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise E2VError("bad_request", f"Not a valid URL: {exc}. / URL 无效。") from None
    if not parsed.host:
        raise E2VError("bad_request", "The URL has no host. / URL 缺少主机名。")
    if parsed.userinfo:
        raise E2VError(
            "bad_request", "URLs with a user name or password are not accepted. / 不接受包含用户名或密码的 URL。"
        )
    return parsed


def _timeout(policy: FetchPolicy, total: bool, what: str = "") -> E2VError:
    if total:
        return E2VError(
            "url_timeout",
            f"The download took longer than {policy.timeout_s:g} s (E2V_URL_TIMEOUT_S). / 下载超时。",
        )
    return E2VError(
        "url_timeout",
        f"The server did not answer in time{' ' + what if what else ''} (E2V_URL_CONNECT_TIMEOUT_S "
        f"{policy.connect_timeout_s:g} s, E2V_URL_READ_TIMEOUT_S {policy.read_timeout_s:g} s). / 远程服务器响应超时。",
    )


def _too_slow(guard: _Guard) -> E2VError:
    kb, grace = guard.policy.min_rate / 1024, guard.policy.read_timeout_s
    took = time.monotonic() - guard.started
    return E2VError(
        "url_timeout",
        f"The download was slower than {kb:g} KB/s (E2V_URL_MIN_RATE_KB, counted after the first {grace:g} s): "
        f"{guard.received} bytes in {took:.1f} s. / 下载速度低于 {kb:g} KB/s，已中止。",
    )


def _too_large(policy: FetchPolicy) -> E2VError:
    mb = policy.max_bytes / 1024 / 1024
    return E2VError(
        "file_too_large",
        f"The file at the URL is larger than {mb:g} MB (E2V_MAX_UPLOAD_MB). / 远程文件超过 {mb:g} MB 上限。",
    )


def fetch_url(url: str, policy: FetchPolicy) -> Fetched:
    """Download ``url`` under ``policy`` (see the module docstring).

    Raises:
        E2VError: ``url_forbidden``, ``url_unreachable``, ``url_timeout``,
            ``file_too_large`` or ``bad_request``.
    """
    t0 = time.monotonic()
    current = check_url(url, policy)
    guard = _Guard(policy, t0)
    timeout = httpx.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s,
                            write=policy.read_timeout_s, pool=policy.connect_timeout_s)  # fmt: skip
    headers = {"User-Agent": f"emotion2vec-webui/{__version__}", "Accept": "*/*", "Accept-Encoding": "identity"}
    try:
        with httpx.Client(transport=_Transport(guard), trust_env=False, follow_redirects=False,
                          timeout=timeout, headers=headers) as client:  # fmt: skip
            for hop in range(policy.max_redirects + 1):
                with client.stream("GET", current) as response:
                    if response.status_code in _REDIRECTS and response.headers.get("location"):
                        current = _redirect_target(current, response.headers["location"], policy)
                        continue
                    if response.status_code != 200:
                        raise E2VError(
                            "url_unreachable",
                            f"{redact(str(current))} answered HTTP {response.status_code}. / "
                            f"远程服务器返回 HTTP {response.status_code}。",
                        )
                    data = _read_body(response, policy)
                    return Fetched(
                        data=data,
                        name=_file_name(current),
                        url=redact(str(current)),
                        address=guard.address,
                        redirects=hop,
                        seconds=time.monotonic() - t0,
                    )
    except httpcore.TimeoutException:
        raise _too_slow(guard) if guard.too_slow else _timeout(policy, total=guard.left() <= 0) from None
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        # httpx builds the next request of every redirect itself, and raises InvalidURL on a Location
        # such as http:\\127.0.0.1:8080\a.wav (issue 26): a bad answer from the remote server.
        raise _bad_redirect(current, exc) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpx.HTTPError) as exc:
        if isinstance(exc, httpx.TimeoutException):
            raise _too_slow(guard) if guard.too_slow else _timeout(policy, total=guard.left() <= 0) from None
        raise E2VError(
            "url_unreachable", f"Cannot download {redact(url)}: {type(exc).__name__}: {exc}. / 无法下载该 URL。"
        ) from None
    raise E2VError(
        "url_unreachable", f"More than {policy.max_redirects} redirects from {redact(url)}. / 重定向次数过多。"
    )


def _bad_redirect(current: httpx.URL, exc: Exception) -> E2VError:
    return E2VError(
        "url_unreachable",
        f"{redact(str(current))} redirected to a malformed URL ({str(exc)[:120]}). / 远程服务器重定向到了无效的 URL。",
    )


def _redirect_target(current: httpx.URL, location: str, policy: FetchPolicy) -> httpx.URL:
    """The URL a redirect points at, checked like the first (scheme, host, credentials); malformed: ``url_unreachable``."""
    if any(ch == "\\" or ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in location):
        raise _bad_redirect(current, ValueError("a backslash, space or control character in Location"))
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise _bad_redirect(current, exc) from None
    return check_url(str(target), policy)


def _read_body(response: httpx.Response, policy: FetchPolicy) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise E2VError(
            "url_unreachable",
            f"The server sent a {encoding[:20]}-compressed body; ask for the file itself. "
            "/ 服务器发送了压缩的内容，请直接请求文件本身。",
        )
    length = response.headers.get("content-length", "").strip()
    if length.isascii() and length.isdigit() and (len(length) > 18 or int(length) > policy.max_bytes):
        raise _too_large(policy)
    buf = bytearray()
    for chunk in response.iter_raw(_CHUNK):
        buf += chunk
        if len(buf) > policy.max_bytes:
            raise _too_large(policy)  # closing the response drops the connection mid-body
    return bytes(buf)


def _file_name(url: httpx.URL) -> str:
    segment = urllib.parse.unquote(url.path.rsplit("/", 1)[-1])
    segment = "".join(ch for ch in segment if ch.isprintable() and ch not in "/\\")[:200]
    return segment or url.host or "download"


class DownloadSlots:
    """How many downloads a server runs at once: in all, and per client.

    The REST API and the UI's URL box download before a request takes an
    admission slot (``serving/admission.py``), so downloads need their own bound:
    ``E2V_URL_MAX_CONCURRENT`` in all (``503 overloaded`` beyond) and
    ``E2V_URL_MAX_PER_CLIENT`` per client (``429 rate_limited``); 0 turns either
    off. Batch and the CLI fetch without it. Thread-safe.
    """

    def __init__(self, max_concurrent: int, per_client: int) -> None:
        self.max_concurrent, self.per_client = max_concurrent, per_client
        self.active = 0
        self._clients: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, client: str | None = None):
        """Hold one download slot (``client``: whose, for the per-client bound; None: none applies).

        Raises:
            E2VError: ``rate_limited`` (the client holds its share) or ``overloaded`` (every slot is taken).
        """
        with self._lock:
            if client is not None and 0 < self.per_client <= self._clients[client]:
                raise E2VError(
                    "rate_limited",
                    f"This client is already downloading {self.per_client} audio_url(s) (E2V_URL_MAX_PER_CLIENT); "
                    "retry when one is done. / 此客户端同时下载的 audio_url 已达上限，请稍后重试。",
                )
            if 0 < self.max_concurrent <= self.active:
                raise OverloadedError(
                    f"The server is already downloading {self.max_concurrent} audio_url(s) (E2V_URL_MAX_CONCURRENT); "
                    "retry shortly. / 服务器同时下载的 audio_url 已达上限，请稍后重试。"
                )
            self.active += 1
            if client is not None:
                self._clients[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                if client is not None:
                    self._clients[client] -= 1
                    if self._clients[client] <= 0:
                        del self._clients[client]


@functools.lru_cache(maxsize=8)
def download_slots(max_concurrent: int, per_client: int) -> DownloadSlots:
    """The process's one :class:`DownloadSlots` for these bounds: the REST API and the UI share it."""
    return DownloadSlots(max_concurrent, per_client)
