"""Code formats: the 12-digit numeric code with a Damm check digit, and the rotating QR token.

- Numeric code: 11 digits from the OS CSPRNG plus a Damm check digit. Damm catches every single-digit error and
  every swap of adjacent digits, so a typo is refused before any lookup (and costs an attacker a wasted guess).
  Shown as `1234 5678 9012`.
- QR token: `SDQ1.<code ref>.<8 digits>`, the digits a TOTP (RFC 6238 style: HMAC-SHA256 of the code's own secret
  over 30-second steps, dynamically truncated). The verifier accepts the current step ± 1, so a screenshot stops
  working within about a minute. The ref is the code's id, not its number: the QR never shows the static code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
import uuid
from datetime import datetime

CODE_LENGTH = 12
TOKEN_PREFIX = "SDQ1"  # noqa: S105 (a format marker, not a secret)
STEP_SECONDS = 30
TOKEN_DIGITS = 8
ACCEPTED_STEPS = (-1, 0, 1)

# The Damm algorithm's weakly totally anti-symmetric quasigroup of order 10.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}\.([0-9a-f]{{32}})\.(\d{{{TOKEN_DIGITS}}})$")


def damm_digit(digits: str) -> int:
    interim = 0
    for char in digits:
        interim = _DAMM[interim][int(char)]
    return interim


def new_code() -> str:
    body = "".join(str(secrets.randbelow(10)) for _ in range(CODE_LENGTH - 1))
    return body + str(damm_digit(body))


def normalise(raw: str) -> str | None:
    """The code without the spaces or dashes people type, or None if it is not 12 digits."""
    digits = re.sub(r"[\s-]", "", raw)
    return digits if len(digits) == CODE_LENGTH and digits.isdigit() else None


def check_digit_ok(code: str) -> bool:
    return damm_digit(code) == 0


def grouped(code: str) -> str:
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def masked(code: str) -> str:
    """For audit logs: enough to recognise a code, not enough to use it."""
    return f"{code[:2]}******{code[-4:]}" if len(code) >= 8 else "***"


def new_secret() -> bytes:
    return secrets.token_bytes(20)


def totp(secret: bytes, step: int) -> str:
    mac = hmac.new(secret, struct.pack(">Q", step), hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**TOKEN_DIGITS:0{TOKEN_DIGITS}d}"


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def qr_token(code_id: uuid.UUID, secret: bytes, moment: datetime) -> str:
    return f"{TOKEN_PREFIX}.{code_id.hex}.{totp(secret, step_at(moment))}"


def parse_token(token: str) -> tuple[uuid.UUID, str] | None:
    match = _TOKEN.match(token.strip())
    return (uuid.UUID(match.group(1)), match.group(2)) if match else None


def token_valid(secret: bytes, value: str, moment: datetime) -> bool:
    now = step_at(moment)
    # Every window is compared (no early exit), in constant time.
    results = [hmac.compare_digest(totp(secret, now + drift), value) for drift in ACCEPTED_STEPS]
    return any(results)


def seconds_left(moment: datetime) -> int:
    return STEP_SECONDS - int(moment.timestamp()) % STEP_SECONDS
