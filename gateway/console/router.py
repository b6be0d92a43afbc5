"""The merchant console (`/console/`) and the customer's tracking page (`/track/`): static pages served by the gateway.

The pages hold no privilege of their own: their scripts call the same public API as any client, with the signed-in
person's token (or a tracking link's). No CDN and no build step: plain ES modules, and vendored files recorded in
`static/vendor/VENDORED.md`. Every answer carries a strict Content-Security-Policy (scripts, styles and connections
to this origin only, no inline script, no framing), no referrer and no MIME sniffing, so a value an attacker typed
into an order (a note, a name) can't run as script even if a view rendered it as markup (none does: views build
DOM nodes with `textContent`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "media-src 'self' data: blob:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Pages and scripts are small; revalidated on every load so a deploy shows at once (ETag answers 304).
    (b"cache-control", b"no-cache"),
]


class _Secured:
    """Adds the pages' security headers to every answer of the static app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


def _redirect_to(location: str) -> Callable[[], Awaitable[RedirectResponse]]:
    async def redirect() -> RedirectResponse:
        return RedirectResponse(location, status_code=308)

    return redirect


def install_console(app: FastAPI) -> None:
    """Serves the console at /console/ and the tracking page at /track/ (before the gateway's catch-all route)."""

    for prefix in ("/console", "/track"):
        app.add_api_route(prefix, _redirect_to(prefix + "/"), methods=["GET"], include_in_schema=False)
    app.mount("/track", _Secured(StaticFiles(directory=STATIC / "track", html=True)), name="track")
    app.mount("/console", _Secured(StaticFiles(directory=STATIC, html=True)), name="console")
