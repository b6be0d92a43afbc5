"""Tencent Cloud API 3.0's request signature, TC3-HMAC-SHA256, for a JSON POST to `/`.

The canonical request signs the method, the path `/`, an empty query, the `content-type` and `host` headers as
sent, and the body's SHA-256; the key derives from the secret key, the UTC date of the timestamp and the service
(`sms`). See the Tencent Cloud API 3.0 signature v3 documentation, and `tencentcloud/common/abstract_client.py` of
the official SDK, which builds the same string.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def signature(*, secret_key: str, service: str, host: str, content_type: str, body: bytes, timestamp: int) -> str:
    """The hex signature of a POST to `/` with this body, sent at `timestamp` (Unix seconds)."""
    date = utc_date(timestamp)
    canonical_request = (
        f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n{hashlib.sha256(body).hexdigest()}"
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(*, secret_id: str, service: str, timestamp: int, signature: str) -> str:
    """The `Authorization` header carrying a signature."""
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
