"""WeChat Pay API v3: request signing, response and notification verification, resource decryption.

The wire format is WeChat's own (https://pay.weixin.qq.com/doc/v3/merchant/4012365342 and its neighbours):
- a request carries `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",
  timestamp="..",serial_no=".."`, the signature being RSA-SHA256 (PKCS#1 v1.5) with the merchant's private key over
  `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`;
- responses and notifications carry `Wechatpay-Timestamp/-Nonce/-Signature/-Serial` and
  `Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048`, the signature being the platform key's over
  `TIMESTAMP\\nNONCE\\nBODY\\n`; a signature of another type (`WECHATPAY2-SM2-WITH-SM3`) or of no stated type is
  refused, as WeChat's own SDKs refuse it; answers also carry a `Request-ID`, which WeChat's support asks for;
- a notification's `resource` is AEAD_AES_256_GCM-encrypted with the merchant's APIv3 key.
The same client talks to the real API or to our sandbox (`deploy.local.sandboxes.wechatpay`): only the base URL and
the keys differ.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from services.order.errors import PaymentProviderError, PaymentRejected

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# The one signature type we verify (the `Wechatpay-Signature-Type` of answers and notifications).
SIGNATURE_TYPE = AUTH_SCHEMA
# Notifications older (or newer) than this are refused: a captured one cannot be replayed days later.
MAX_CLOCK_SKEW_SECONDS = 300


def sign(private_key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(private_key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay keys are RSA keys")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay keys are RSA keys")
    return key


def authorization(
    private_key: rsa.RSAPrivateKey, *, mchid: str, serial_no: str, method: str, path: str, body: str
) -> str:
    nonce, timestamp = secrets.token_hex(16), str(int(time.time()))
    signature = sign(private_key, f"{method}\n{path}\n{timestamp}\n{nonce}\n{body}\n")
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> dict[str, str]:
    schema, _, params = header.partition(" ")
    if schema != AUTH_SCHEMA:
        return {}
    fields = {}
    for part in params.split(","):
        key, _, value = part.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def signed_headers(private_key: rsa.RSAPrivateKey, serial: str, body: str) -> dict[str, str]:
    """The headers WeChat puts on its responses and notifications (the sandbox signs with them)."""
    nonce, timestamp = secrets.token_hex(16), str(int(time.time()))
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign(private_key, f"{timestamp}\n{nonce}\n{body}\n"),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def encrypt_resource(apiv3_key: str, plaintext: dict[str, Any], associated_data: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # WeChat uses 12 printable characters
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(plaintext, ensure_ascii=False).encode(), associated_data.encode()
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "original_type": associated_data,
        "nonce": nonce,
    }


@dataclass(frozen=True)
class Notification:
    id: str
    event_type: str  # TRANSACTION.SUCCESS | REFUND.SUCCESS | REFUND.ABNORMAL | REFUND.CLOSED
    resource: dict[str, Any]


@dataclass(frozen=True)
class WechatPayConfig:
    base_url: str
    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_private_key_pem: str
    platform_public_key_id: str
    platform_public_key_pem: str
    apiv3_key: str
    notify_url: str


class WechatPayClient:
    """The merchant side of WeChat Pay v3 (JSAPI, i.e. mini-program payments)."""

    def __init__(self, config: WechatPayConfig, http: httpx.AsyncClient) -> None:
        if len(config.apiv3_key.encode()) != 32:
            raise ValueError("the WeChat Pay APIv3 key is 32 bytes")
        self.config = config
        self.http = http
        self.private_key = load_private_key(config.merchant_private_key_pem)
        self.platform_key = load_public_key(config.platform_public_key_pem)

    # --- requests -------------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload is not None else ""
        headers = {
            "Authorization": authorization(
                self.private_key,
                mchid=self.config.mchid,
                serial_no=self.config.merchant_serial_no,
                method=method,
                path=path,
                body=body,
            ),
            "Accept": "application/json",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self.http.request(
                method, self.config.base_url.rstrip("/") + path, content=body.encode(), headers=headers
            )
        except httpx.HTTPError as exc:
            raise PaymentProviderError(f"WeChat Pay unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()
            except ValueError:
                error = {"code": f"HTTP_{response.status_code}", "message": response.text[:200]}
            raise PaymentProviderError(
                f"WeChat Pay refused: {error.get('code')}: {error.get('message')}"
                f" (Request-ID {response.headers.get('request-id', 'none')})",
                provider_code=error.get("code"),
            )
        # Responses are signed like notifications; an unsigned or forged answer is not believed.
        self._verify(dict(response.headers), response.text)
        return response.json() if response.content else {}

    async def jsapi_prepay(self, *, out_trade_no: str, description: str, amount_fen: int, openid: str) -> str:
        answer = await self._call(
            "POST",
            "/v3/pay/transactions/jsapi",
            {
                "appid": self.config.appid,
                "mchid": self.config.mchid,
                "description": description[:127],
                "out_trade_no": out_trade_no,
                "notify_url": self.config.notify_url,
                "amount": {"total": amount_fen, "currency": "CNY"},
                "payer": {"openid": openid},
            },
        )
        return str(answer["prepay_id"])

    def client_pay_params(self, prepay_id: str) -> dict[str, str]:
        """What the mini-program passes to `wx.requestPayment`."""
        timestamp, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
        return {
            "appId": self.config.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": sign(self.private_key, f"{self.config.appid}\n{timestamp}\n{nonce}\n{package}\n"),
        }

    async def query(self, out_trade_no: str) -> dict[str, Any]:
        return await self._call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={self.config.mchid}")

    async def close(self, out_trade_no: str) -> None:
        await self._call(
            "POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", {"mchid": self.config.mchid}
        )

    async def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> dict[str, Any]:
        """Submits a refund. WeChat dedupes on out_refund_no, so resubmitting after a lost answer is safe."""
        return await self._call(
            "POST",
            "/v3/refund/domestic/refunds",
            {
                "out_trade_no": out_trade_no,
                "out_refund_no": out_refund_no,
                "reason": reason[:80],
                "notify_url": self.config.notify_url,
                "amount": {"refund": amount_fen, "total": total_fen, "currency": "CNY"},
            },
        )

    # --- notifications --------------------------------------------------------------------------------------

    def _verify(self, headers: dict[str, str], body: str, now: float | None = None) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        signature = lower.get("wechatpay-signature", "")
        serial = lower.get("wechatpay-serial", "")
        if not (timestamp and nonce and signature):
            raise PaymentRejected("The WeChat Pay signature headers are missing")
        signature_type = lower.get("wechatpay-signature-type", "")
        if signature_type != SIGNATURE_TYPE:
            raise PaymentRejected(f"Unsupported WeChat Pay signature type {signature_type!r}")
        if serial != self.config.platform_public_key_id:
            raise PaymentRejected(f"Unknown WeChat Pay key {serial!r}")
        if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            raise PaymentRejected("The WeChat Pay timestamp is too far from now")
        if not verify(self.platform_key, f"{timestamp}\n{nonce}\n{body}\n", signature):
            raise PaymentRejected("The WeChat Pay signature does not verify")

    def parse_notification(self, headers: dict[str, str], body: str) -> Notification:
        """Verifies the signature and decrypts the resource; PaymentRejected on anything wrong."""
        self._verify(headers, body)
        try:
            envelope = json.loads(body)
            resource = envelope["resource"]
            if resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise PaymentRejected(f"Unsupported algorithm {resource.get('algorithm')!r}")
            plaintext = AESGCM(self.config.apiv3_key.encode()).decrypt(
                resource["nonce"].encode(),
                base64.b64decode(resource["ciphertext"]),
                (resource.get("associated_data") or "").encode(),
            )
            return Notification(
                id=str(envelope["id"]), event_type=str(envelope["event_type"]), resource=json.loads(plaintext)
            )
        except PaymentRejected:
            raise
        except Exception as exc:  # malformed JSON, wrong key, tampered ciphertext
            raise PaymentRejected(f"The notification cannot be read: {type(exc).__name__}") from exc
