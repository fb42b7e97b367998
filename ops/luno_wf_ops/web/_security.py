"""Response headers (a strict Content-Security-Policy) and CSRF protection for the web UI."""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "CSRF_COOKIE", "CSRF_FIELD", "SecurityHeaders", "check_csrf", "csrf_token"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Scripts and styles from the app's own static files only: no inline code at all."""

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

CSRF_COOKIE = "luno_wf_ops_csrf"
CSRF_FIELD = "csrf_token"


class SecurityHeaders:
    """ASGI middleware adding the CSP and related headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def csrf_token(request: Request) -> str:
    """The request's CSRF token: its cookie's, or a new one :func:`set_csrf_cookie` sets."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = getattr(request.state, "new_csrf", "") or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Set the cookie of a token made for this request (see :func:`csrf_token`)."""
    token = getattr(request.state, "new_csrf", "")
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path=request.scope.get("root_path") or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def check_csrf(request: Request, form: FormData) -> None:
    """Refuse (403) a form whose token does not match its cookie, or sent from elsewhere.

    The token is a double-submit: the cookie (SameSite=Strict, HttpOnly) and the form
    field must be equal. A browser's ``Origin`` header, when present, must be this host.
    """
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = form.get(CSRF_FIELD, "")
    if not cookie or not isinstance(field, str) or not hmac.compare_digest(cookie, field):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, f"cross-origin form from {origin} refused")
