"""TLS to PostgreSQL, named in the database URL as libpq names it: `?sslmode=verify-full&sslrootcert=/ca.pem` (and
`sslcert`/`sslkey`/`sslpassword` for a client certificate). asyncpg takes none of these as connection arguments, so
they leave the URL and become the `ssl` argument it does take: an `SSLContext` (or False for `disable`).

| sslmode | what is checked |
|---|---|
| `disable` | no TLS |
| `allow`, `prefer` | TLS if the server offers it (asyncpg's own modes), nothing verified |
| `require` | TLS, nothing verified |
| `verify-ca` | TLS, the server's certificate chains to `sslrootcert` (default: the system's CAs) |
| `verify-full` | as `verify-ca`, and the certificate names the host connected to |
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import URL, make_url

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")


def split_tls(url: str | URL) -> tuple[URL, dict[str, Any]]:
    """The URL without its TLS parameters, and the connection arguments they make (none if the URL names none)."""
    parsed = make_url(url)
    query = dict(parsed.query)
    found = {name: str(query.pop(name)) for name in _PARAMETERS if name in query}
    if not found:
        return parsed, {}
    return parsed.set(query=query), {"ssl": ssl_argument(**found)}


def ssl_argument(
    sslmode: str = "prefer", sslrootcert: str = "", sslcert: str = "", sslkey: str = "", sslpassword: str = ""
) -> ssl.SSLContext | str | bool:
    if sslmode not in MODES:
        raise ValueError(f"sslmode {sslmode!r} is none of {', '.join(MODES)}")
    if sslmode == "disable":
        return False
    if sslmode in ("allow", "prefer") and not sslcert:
        return sslmode
    verify = sslmode in ("verify-ca", "verify-full")
    context = (
        ssl.create_default_context(cafile=sslrootcert or None) if verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    )
    context.check_hostname = sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if sslcert:
        context.load_cert_chain(sslcert, sslkey or None, sslpassword or None)
    return context
