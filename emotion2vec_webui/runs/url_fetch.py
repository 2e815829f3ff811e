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
  checked. ``E2V_URL_ALLOW`` (host names, ``*.suffix`` names, IPs and CIDRs)
  lets chosen hosts or networks through;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each new URL
  checked again (scheme), and its connection checked again (address);
* the body streams into memory with a cap of ``E2V_MAX_UPLOAD_MB`` (a larger
  ``Content-Length`` is refused before reading) → ``file_too_large`` (413);
  ``Accept-Encoding: identity`` and raw reads: no decompression bomb;
* time: ``E2V_URL_CONNECT_TIMEOUT_S`` (lookup and connect, per hop),
  ``E2V_URL_READ_TIMEOUT_S`` (the longest silence), ``E2V_URL_TIMEOUT_S``
  (the whole download: every socket wait is cut to what is left, so a server
  trickling one byte a second is stopped on time) → ``url_timeout`` (504);
* anything else (no such host, refused connection, an HTTP error status, a
  redirect loop) → ``url_unreachable`` (502).

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

import concurrent.futures
import functools
import ipaddress
import logging
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass

import httpcore
import httpx

from emotion2vec_webui import __version__
from emotion2vec_webui.errors import E2VError

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
    read_timeout_s: float = 15.0  # E2V_URL_READ_TIMEOUT_S
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


class _Allow:
    def __init__(self, entries: tuple[str, ...]) -> None:
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".").strip("[]")
            if not entry:
                continue
            try:
                self.nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry.startswith("*."):
                    self.suffixes.append(entry[1:])
                else:
                    self.hosts.add(entry)

    def host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.nets)


class _Guard:
    """Resolves and checks a host for one fetch; remembers the address it let through."""

    def __init__(self, policy: FetchPolicy, deadline: float) -> None:
        self.policy, self.deadline = policy, deadline
        self.allow = _Allow(policy.allow)
        self.address = ""

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def resolve(self, host: str, port: int) -> list[str]:
        host = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._lookup(host, port)
        host_allowed = self.allow.host(host)
        for ip in addresses:
            reason = forbidden_reason(ip)
            if reason and not host_allowed and not self.allow.address(ip):
                where = f"{ip} is" if host == str(ip) else f"{host[:100]} resolves to {ip},"
                raise E2VError(
                    "url_forbidden",
                    f"{where} a {reason} address; the server does not fetch from it "
                    "(E2V_URL_ALLOW lists hosts and networks that may be reached). / "
                    f"{host} 指向受限地址 {ip}，服务器拒绝访问。",
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

    def _wait(self, timeout: float | None) -> float:
        left = self.guard.left()
        if left <= 0:
            raise httpcore.ReadTimeout("the whole download took too long")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self._wait(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._wait(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        # server_hostname is the URL's host (httpcore passes it): the certificate is checked against it, SNI sends it.
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, self._wait(timeout)), self.guard)

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
    guard = _Guard(policy, t0 + policy.timeout_s)
    timeout = httpx.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s,
                            write=policy.read_timeout_s, pool=policy.connect_timeout_s)  # fmt: skip
    headers = {"User-Agent": f"emotion2vec-webui/{__version__}", "Accept": "*/*", "Accept-Encoding": "identity"}
    try:
        with httpx.Client(transport=_Transport(guard), trust_env=False, follow_redirects=False,
                          timeout=timeout, headers=headers) as client:  # fmt: skip
            for hop in range(policy.max_redirects + 1):
                with client.stream("GET", current) as response:
                    if response.status_code in _REDIRECTS and response.headers.get("location"):
                        try:
                            current = check_url(str(current.join(response.headers["location"])), policy)
                        except httpx.InvalidURL as exc:
                            raise E2VError(
                                "url_unreachable", f"A redirect points at a bad URL: {exc}. / 重定向指向无效的 URL。"
                            ) from None
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
        raise _timeout(policy, total=guard.left() <= 0) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpx.HTTPError) as exc:
        if isinstance(exc, httpx.TimeoutException):
            raise _timeout(policy, total=guard.left() <= 0) from None
        raise E2VError(
            "url_unreachable", f"Cannot download {redact(url)}: {type(exc).__name__}: {exc}. / 无法下载该 URL。"
        ) from None
    raise E2VError(
        "url_unreachable", f"More than {policy.max_redirects} redirects from {redact(url)}. / 重定向次数过多。"
    )


def _read_body(response: httpx.Response, policy: FetchPolicy) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise E2VError(
            "url_unreachable",
            f"The server sent a {encoding[:20]}-compressed body; ask for the file itself. "
            "/ 服务器发送了压缩的内容，请直接请求文件本身。",
        )
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > policy.max_bytes:
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
