"""WeChat's message push, as every mini-program receives it: the signature of the URL and the safe mode's sealing.

A push's URL carries `signature = sha1(sorted([token, timestamp, nonce]))`, which never covers the body. In safe
mode (安全模式, the account has an EncodingAESKey) the body is `{"ToUserName", "Encrypt"}`: AES-256-CBC with the key
`base64(EncodingAESKey + "=")`, IV its first 16 bytes, PKCS#7 to 32-byte blocks, over
`random(16) + len(4, big-endian) + message + appid`, and `msg_signature = sha1(sorted([token, timestamp, nonce,
Encrypt]))` covers it. Used by dispatch (delivery status pushes) and notify (subscribe-message events).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class PushRefused(ValueError):
    """The push is not WeChat's for this account: a wrong signature, a key that does not open it, another appid."""


class PushMalformed(ValueError):
    """The push is not in WeChat's form."""


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324  (WeChat's)


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()  # noqa: S324


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def _aes(encoding_aes_key: str) -> Cipher[modes.CBC]:
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except ValueError as error:
        raise PushRefused("the account's EncodingAESKey is not base64") from error
    if len(key) != 32:
        raise PushRefused("the account's EncodingAESKey does not decode to 32 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt_push(encoding_aes_key: str, appid: str, message: bytes) -> str:
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + appid.encode()
    pad = 32 - len(plain) % 32
    encryptor = _aes(encoding_aes_key).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def decrypt_push(encoding_aes_key: str, appid: str, encrypt: str) -> bytes:
    """The message inside a safe-mode push; PushRefused when it does not open or names another appid."""
    try:
        sealed = base64.b64decode(encrypt, validate=True)
    except ValueError as error:
        raise PushMalformed("Encrypt is not base64") from error
    if not sealed or len(sealed) % 16:
        raise PushRefused("Encrypt is not whole AES blocks")
    decryptor = _aes(encoding_aes_key).decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or len(plain) < 20 + pad:
        raise PushRefused("Encrypt does not open with this key")
    content = plain[16:-pad]
    (length,) = struct.unpack(">I", content[:4])
    message, sender = content[4 : 4 + length], content[4 + length :]
    if len(message) != length or (appid and sender.decode(errors="replace") != appid):
        raise PushRefused("the push is for another mini-program")
    return message
