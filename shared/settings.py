"""Settings every service shares. Each service subclasses with its own env prefix (ORDER_, DISPATCH_, ...).

There is no module-level instance: `create_app(settings)` takes one, and tests build their own.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, ClassVar, Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol


class UnknownSettingError(Exception):
    """An environment variable under a component's prefix that names none of its settings: a misspelt setting
    would otherwise be silently replaced by its default."""


class PrefixedSettings(BaseSettings):
    """Settings read from `<PREFIX>_*` variables, refusing any such variable that is not one of them."""

    model_config = SettingsConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_variables(cls, data: Any) -> Any:
        prefix = cls.model_config.get("env_prefix", "").upper()
        if prefix:
            known = {f"{prefix}{name.upper()}" for name in cls.model_fields}
            for variable in sorted(os.environ):
                name = variable.upper()
                if name.startswith(prefix) and name not in known:
                    closest = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {closest[0]}?" if closest else f"; known: {', '.join(sorted(known))}"
                    raise UnknownSettingError(f"Unknown setting {variable}{hint}")
        return data


class ServiceSettings(PrefixedSettings):
    service_name: ClassVar[str]

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/songda"
    database_pool_size: int = 10

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Real Kafka supports the idempotent producer; Tansu does not (InitProducerId fails), so it is a setting.
    kafka_enable_idempotence: bool = False
    kafka_request_timeout_ms: int = 10_000
    kafka_session_timeout_ms: int = 6_000
    # How long a consumer's background fetcher waits for a cause to wake (a fetch answered, records consumed, a
    # partition resumed or reassigned) before it looks again anyway. aiokafka's default, 200 ms, wakes each idle
    # consumer five times a second for nothing.
    kafka_consumer_timeout_ms: int = 2_000
    # Managed Kafka: SASL (PLAIN, SCRAM-SHA-256/512) and TLS (shared/events/kafka_security.py).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_key_password: str = ""
    # Topics this service consumes; the consumer group is the service name.
    consumes: list[str] = []

    jwt_issuer: str = "songda"
    jwt_audience: str = "songda"
    # PEM public keys (several may be concatenated, for rotation) or a JWKS URL; either is enough.
    jwt_public_keys: str = ""
    jwt_jwks_url: str = ""

    outbox_batch_size: int = 1000
    # The relay and the timer worker wake on NOTIFY; these polls are only their safety net when idle.
    outbox_poll_seconds: float = 5.0
    # A JSON request body longer than this is refused with 413 before it is held in memory.
    max_body_bytes: int = 1024 * 1024
    outbox_max_backoff_seconds: float = 10.0
    # Published events are kept this long, to republish them to a broker that lost them.
    outbox_retention_hours: float = 168.0

    # A failing handler is tried this many times, then its event is dead-lettered and its subject held.
    consumer_max_attempts: int = 5
    consumer_retry_seconds: float = 0.2
    # An unreachable database or broker is retried without limit, backing off up to this.
    consumer_max_backoff_seconds: float = 10.0
    # Parked events an operator released (`songda dlq replay`/`discard`) are looked for this often, not on every
    # fetch: each look is a database round trip, the largest part of an idle service's CPU.
    consumer_released_check_seconds: float = 5.0
    # Consumers commit their offsets to the broker this often (and at every stop), not after every fetch: what a crash
    # or a rebalance has read again is a duplicate the inbox drops, or passed over on its type.
    consumer_offset_commit_seconds: float = 1.0

    timer_batch_size: int = 100
    timer_poll_seconds: float = 5.0
    timer_max_backoff_seconds: float = 300.0

    # Peers (CIDRs) whose `X-Forwarded-For` is believed: the gateway's addresses. Empty: the TCP peer is the client,
    # so a client that reaches a service directly cannot pass for another address.
    trusted_gateways: list[str] = []

    # On SIGTERM (after uvicorn's own wait for in-flight requests) the consumer gets this long to finish the event
    # in hand and commit; keep both within the pod's terminationGracePeriodSeconds.
    shutdown_grace_seconds: float = 8.0

    log_level: str = "INFO"
    # Background workers (relay, consumer, timers) can be switched off, e.g. for a read-only replica.
    run_workers: bool = True

    @model_validator(mode="after")
    def _kafka_connects(self) -> Self:
        self.kafka_security()  # SASL without credentials, or a key without its certificate, stops the start
        return self

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_key_password=self.kafka_ssl_key_password,
        )
