"""The studio's guard: every request passes it before any page or file is touched.

- **Host allow-list** (DNS rebinding): a request whose ``Host`` is not one of the names
  this server answers to gets 400.
- **Token** off loopback: a studio bound to anything but a loopback address requires a
  token, printed once at start; ``/?token=...`` exchanges it for an HttpOnly,
  SameSite=Strict session cookie. Without either: 401.
- **Writes**: only POST changes anything, and a POST needs the page's CSRF token and an
  ``Origin`` of this very server; else 403. No GET changes anything.
- **Headers**: a strict Content-Security-Policy (scripts and styles only from the
  studio's own static files, no inline script), no framing, no sniffing, no referrer to other sites.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

import psutil
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The session cookie that a token is exchanged for.
SESSION_COOKIE = "runner_studio"
#: The header (or form field ``csrf``) that carries a POST's CSRF token.
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make a form's Origin "null"
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_names(bind_host: str) -> set[str]:
    """The names a browser may use for this server: loopback names, the bound address,
    and for a wildcard bind this machine's host names and addresses."""
    names = {"localhost", "127.0.0.1", "[::1]", bind_host.lower()}
    if ":" in bind_host and not bind_host.startswith("["):
        names.add(f"[{bind_host.lower()}]")
    if bind_host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family == socket.AF_INET:
                    names.add(address.address)
                elif address.family == socket.AF_INET6:
                    names.add(f"[{address.address.split('%')[0]}]")
    return names


@dataclass
class Guard:
    """What the guard checks against; made once per server."""

    bind_host: str
    port: int
    #: None: no token needed (loopback)
    token: str | None
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    sessions: set[str] = field(default_factory=set)
    allowed_hosts: set[str] = field(default_factory=set)

    @classmethod
    def for_server(cls, bind_host: str, port: int, extra_hosts: Iterable[str] = ()) -> Guard:
        """The guard of a server on ``bind_host:port``: a token unless it is loopback."""
        token = None if is_loopback(bind_host) else secrets.token_urlsafe(24)
        hosts = {f"{name}:{port}" for name in _local_names(bind_host) | set(extra_hosts)}
        return cls(bind_host, port, token, allowed_hosts=hosts)

    def host_ok(self, host: str) -> bool:
        """Whether a request's Host header names this server."""
        return host.lower() in self.allowed_hosts

    def origin_ok(self, origin: str | None, host: str) -> bool:
        """A POST's Origin must be this server as the browser reached it."""
        return origin is not None and hmac.compare_digest(origin.lower(), f"http://{host.lower()}")

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether a POST carries the page's CSRF token."""
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)

    def session_ok(self, cookie_header: str | None) -> bool:
        """Whether the request may see anything (always, without a token)."""
        if self.token is None:
            return True
        if not cookie_header:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # a malformed Cookie header is no session
            return False
        morsel = jar.get(SESSION_COOKIE)
        return morsel is not None and any(
            hmac.compare_digest(morsel.value, s) for s in self.sessions
        )


class GuardMiddleware:
    """ASGI middleware applying a :class:`Guard` to every HTTP request (see the module)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.guard.host_ok(host):
            await _plain(send, 400, "this studio does not answer to that Host name")
            return
        if not self.guard.session_ok(headers.get("cookie")):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [None])[0]
            if (
                self.guard.token is not None
                and given is not None
                and scope["method"] == "GET"
                and hmac.compare_digest(given, self.guard.token)
            ):
                await self._start_session(scope, query, send)
                return
            await _plain(
                send, 401, "open the URL with ?token=... that 'runner studio' printed at start"
            )
            return
        if scope["method"] not in ("GET", "HEAD"):
            if scope["method"] != "POST" or not self.guard.origin_ok(headers.get("origin"), host):
                await _plain(send, 403, "a write needs a POST from this studio's own pages")
                return
            presented = headers.get(CSRF_HEADER)
            if presented is None:
                presented, receive = await _form_csrf(receive)
            if not self.guard.csrf_ok(presented):
                await _plain(send, 403, "missing or wrong CSRF token; reload the page")
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + _HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _start_session(self, scope: Scope, query: dict[str, list[str]], send: Send) -> None:
        session = secrets.token_urlsafe(32)
        self.guard.sessions.add(session)
        rest = {k: v for k, v in query.items() if k != "token"}
        location = scope["path"] + (("?" + urlencode(rest, doseq=True)) if rest else "")
        cookie = f"{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    *_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def _plain(send: Send, status: int, text: str) -> None:
    body = f"{status}: {text}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Largest form body read for its CSRF field (forms here are a few fields).
_MAX_FORM = 64 * 1024


async def _form_csrf(receive: Receive) -> tuple[str | None, Receive]:
    """The ``csrf`` field of a url-encoded form body, and a receive that replays the body."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    fields = parse_qs(body.decode("latin-1"))
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return fields.get("csrf", [None])[0], replay
