"""How Songda's Kafka clients authenticate and encrypt: SASL (PLAIN, SCRAM-SHA-256/512) and TLS, for managed Kafka
(MSK, Confluent, CKafka, Alibaba Cloud) as much as for a plaintext broker on a private network.

Every aiokafka client (producer, consumers, admin) is built with `**security.client_kwargs()`. A service reads it
from its `<SERVICE>_KAFKA_*` settings (`ServiceSettings.kafka_security`), the operator's commands from
`SONGDA_KAFKA_*` variables (`KafkaSecurity.from_environ`).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS: tuple[SecurityProtocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[SaslMechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """Settings that cannot connect: SASL without credentials, a client key without its certificate, ..."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    # TLS: the CA bundle that signed the brokers' certificates (empty: the system's), and a client certificate and
    # key for brokers that authenticate clients by certificate (mTLS).
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"Kafka security protocol {self.protocol!r} is none of {', '.join(PROTOCOLS)}")
        if self.sasl and self.sasl_mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"SASL mechanism {self.sasl_mechanism!r} is none of {', '.join(MECHANISMS)}")
        if self.sasl and not (self.sasl_username and self.sasl_password):
            raise KafkaSecurityError(f"{self.protocol} needs a SASL username and password")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise KafkaSecurityError("a client key needs its certificate (ssl certfile)")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_environ(cls, prefix: str = "SONGDA_", environ: dict[str, str] | None = None) -> KafkaSecurity:
        """From `<prefix>KAFKA_SECURITY_PROTOCOL`, `…_SASL_MECHANISM`, `…_SASL_USERNAME`, `…_SASL_PASSWORD`,
        `…_SSL_CAFILE`, `…_SSL_CERTFILE`, `…_SSL_KEYFILE`, `…_SSL_KEY_PASSWORD` (unset: plaintext)."""
        env = os.environ if environ is None else environ

        def value(name: str, default: str = "") -> str:
            return env.get(f"{prefix}KAFKA_{name}", default)

        return cls(
            protocol=value("SECURITY_PROTOCOL", "PLAINTEXT").upper(),  # type: ignore[arg-type]  # checked above
            sasl_mechanism=value("SASL_MECHANISM", "PLAIN").upper(),  # type: ignore[arg-type]
            sasl_username=value("SASL_USERNAME"),
            sasl_password=value("SASL_PASSWORD"),
            ssl_cafile=value("SSL_CAFILE"),
            ssl_certfile=value("SSL_CERTFILE"),
            ssl_keyfile=value("SSL_KEYFILE"),
            ssl_key_password=value("SSL_KEY_PASSWORD"),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the brokers' certificates and host names; presents the client certificate if one is set."""
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile or None,
            certfile=self.ssl_certfile or None,
            keyfile=self.ssl_keyfile or None,
            password=self.ssl_key_password or None,
        )
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client (producer, consumer, admin) takes for this security."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs


PLAINTEXT = KafkaSecurity()
