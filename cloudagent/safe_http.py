"""Outbound GETs to URLs someone else chose: a failed-rows file's `failedFilePath` arrives in a callback, and a
forged callback must not make a worker fetch an address inside our network (cloud metadata, Redis, the admin).

Three rules, each closing a way round the one before:
- The URL is read the way urllib3 connects, and refused when another parser could read it differently (a
  backslash, user info, spaces or control characters): `http://127.0.0.1:8000\\@files.example.com/` names
  files.example.com to `urlsplit` but connects to 127.0.0.1.
- The host is resolved once and every address it resolves to must be public (not private, loopback,
  link-local, reserved, multicast or unspecified; IPv4 inside IPv6 is unwrapped); the connection then goes to the
  address that was checked, with the name kept for the Host header, SNI and the certificate check, so a second
  DNS answer cannot swap in 127.0.0.1.
- Every redirect hop is checked the same way, the body is read up to a cap, the whole download has a deadline.

Pure Python on urllib3: no Django, no models. Callers pass a FetchPolicy built from their settings.
"""

from __future__ import annotations

import ipaddress
import socket
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, LocationParseError
from urllib3.util import parse_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# What may appear in a URL we fetch: printable ASCII without spaces or backslashes. Anything else is where
# parsers disagree (a pre-signed storage URL never needs it; its query is percent-encoded).
_URL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
READ_CHUNK = 64 * 1024


class FetchRefused(Exception):
    """The URL, an address it resolves to, a redirect or the answer breaks a rule: trying again cannot help."""


class FetchTooLarge(FetchRefused):
    """The body is over the policy's cap."""


class FetchFailed(Exception):
    """A transport problem (DNS, connect, timeout, a dropped connection): another try may succeed."""


@dataclass(frozen=True)
class FetchPolicy:
    """`allowed_hosts` (names cover their subdomains, addresses only themselves) narrows the hosts when it names
    any; `allow_networks` lets addresses in otherwise refused ranges through (tests and the demo fetch from
    127.0.0.1); `allow_http` is for development only."""

    max_bytes: int
    timeout: float
    allow_http: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allow_networks: tuple[Network, ...] = ()
    max_redirects: int = 3
    user_agent: str = "leadhub"
    allowed_hosts_name: str = "the allowed hosts"  # how refusals name the list (e.g. its setting)


@dataclass(frozen=True)
class FetchResult:
    url: str  # the last hop's
    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    request_path: str  # path and query as sent


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """ "127.0.0.1/32, ::1" -> networks; a bare address is a /32 or /128."""
    items = text.split(",") if isinstance(text, str) else text
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def url_refusal(url: str, policy: FetchPolicy) -> str:
    """Why this URL will not be fetched ("" when it may be), judged on the URL alone; fetch() also checks the
    addresses the host resolves to when it connects."""
    try:
        _target(url, policy)
    except FetchRefused as exc:
        return str(exc)
    return ""


def address_refusal(address: Address, policy: FetchPolicy) -> str:
    """Why a worker must not connect to this address ("" when it may)."""
    if any(address in network for network in policy.allow_networks if network.version == address.version):
        return ""
    inner = _embedded_ipv4(address)
    if inner is not None:
        problem = address_refusal(inner, policy)
        return f"{address} carries {inner}: {problem}" if problem else ""
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_unspecified or address.is_reserved:
        return f"{address} is a reserved address"
    if not address.is_global:
        return f"{address} is a private address"
    return ""


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one routes to: mapped (::ffff:a.b.c.d), NAT64, 6to4 or Teredo."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _target(url: str, policy: FetchPolicy) -> _Target:
    if not url or len(url) > 2048:
        raise FetchRefused("the URL is empty or over 2048 characters")
    if not set(url) <= _URL_CHARACTERS:
        raise FetchRefused("the URL has characters that are not plain URL characters (spaces, backslashes, ...)")
    try:
        parsed = parse_url(url)  # exactly what urllib3 will connect to
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError) as exc:
        raise FetchRefused(f"the URL cannot be parsed: {exc}") from None
    scheme = (parsed.scheme or "").lower()
    allowed_schemes = ("https", "http") if policy.allow_http else ("https",)
    if scheme not in allowed_schemes:
        raise FetchRefused(f"scheme {scheme or '(none)'!r} is not {'http(s)' if policy.allow_http else 'https'}")
    if parsed.auth is not None or "@" in split.netloc:
        raise FetchRefused("the URL carries user information")
    host = (parsed.host or "").strip("[]").lower()
    if not host:
        raise FetchRefused("the URL names no host")
    if host != (split.hostname or "") or (parsed.port != split_port):
        raise FetchRefused("the URL reads differently to different parsers")
    if policy.allowed_hosts and not any(_host_matches(host, name) for name in policy.allowed_hosts):
        raise FetchRefused(f"host {host!r} is not in {policy.allowed_hosts_name}")
    literal = _literal_address(host)
    if literal is not None and (problem := address_refusal(literal, policy)):
        raise FetchRefused(problem)
    port = parsed.port or (443 if scheme == "https" else 80)
    request_path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query is not None else "")
    return _Target(scheme=scheme, host=host, port=port, request_path=request_path)


def _literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_matches(host: str, allowed: str) -> bool:
    """A name covers its subdomains; an address only itself (127.0.0.1 is no "subdomain" of 0.0.1)."""
    allowed = allowed.lower()
    if host == allowed:
        return True
    return _literal_address(host) is None and host.endswith("." + allowed)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"host {host!r} could not be resolved: {exc}") from exc
    return [info[4][0] for info in infos]


def _checked_address(target: _Target, policy: FetchPolicy, resolver: Resolver) -> str:
    """Resolve once; refuse the host if ANY of its addresses is refused (a name answering both a public and a
    private address is an attack, not a CDN)."""
    literal = _literal_address(target.host)
    if literal is not None:
        return str(literal)
    addresses = [ipaddress.ip_address(text.split("%", 1)[0]) for text in resolver(target.host, target.port)]
    if not addresses:
        raise FetchFailed(f"host {target.host!r} resolved to no address")
    for address in addresses:
        if problem := address_refusal(address, policy):
            raise FetchRefused(f"host {target.host!r} resolves to {problem}")
    return str(addresses[0])


def _pool(target: _Target, address: str, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A pool connecting to the checked address; TLS still sends the name (SNI) and verifies the certificate
    against it."""
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)


def _host_header(target: _Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def fetch(url: str, *, policy: FetchPolicy, resolver: Resolver = system_resolver) -> FetchResult:
    """GET `url` under `policy`, following redirects hop by hop, each checked like the first.

    Raises FetchRefused (or FetchTooLarge) when a rule is broken and FetchFailed on a transport problem or when
    the deadline passes. Any HTTP status is returned: the caller knows what a 403 or a 503 means to it."""
    deadline = time.monotonic() + policy.timeout
    for hop in range(policy.max_redirects + 1):
        try:
            target = _target(url, policy)
        except FetchRefused as exc:
            raise FetchRefused(f"redirects to a URL refused: {exc}" if hop else str(exc)) from None
        address = _checked_address(target, policy, resolver)
        remaining = max(deadline - time.monotonic(), 0.1)
        timeout = urllib3.Timeout(connect=min(remaining, 10), read=remaining)
        pool = _pool(target, address, timeout)
        try:
            response = pool.urlopen(
                "GET",
                target.request_path,
                headers={"Host": _host_header(target), "User-Agent": policy.user_agent, "Accept-Encoding": "identity"},
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                body = _read_capped(response, policy.max_bytes, deadline)
                return FetchResult(url=url, status=response.status, headers=dict(response.headers), body=body)
            finally:
                response.release_conn()
        except HTTPError as exc:
            raise FetchFailed(f"GET {target.scheme}://{target.host}:{target.port} failed: {exc}") from exc
        finally:
            pool.close()
    raise FetchRefused(f"more than {policy.max_redirects} redirects")


def _read_capped(response, cap: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise FetchTooLarge(f"the body is {declared} bytes, over the {cap}-byte cap")
    chunks, size = [], 0
    while chunk := response.read(READ_CHUNK):
        size += len(chunk)
        if size > cap:
            raise FetchTooLarge(f"the body is over the {cap}-byte cap")
        if time.monotonic() > deadline:
            raise FetchFailed("the download took longer than allowed")
        chunks.append(chunk)
    return b"".join(chunks)
