"""Managed Kafka's settings reach every aiokafka client: SASL mechanism and credentials, and a TLS context that checks
the brokers against the configured CA and presents the client certificate (shown by a real TLS handshake)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from services.order.settings import OrderSettings
from shared.events.consumer import EventConsumer
from shared.events.epoch import BrokerEpoch
from shared.events.kafka import make_producer
from shared.events.kafka_security import KafkaSecurity, KafkaSecurityError
from shared.settings import UnknownSettingError
from tests.tls import Authority


def _client(kafka_object: Any) -> Any:
    return getattr(kafka_object, "client", None) or kafka_object._client


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_settings_reach_the_producer_the_consumer_and_the_epoch_reader(mechanism: str) -> None:
    settings = OrderSettings(
        kafka_bootstrap_servers="kafka.example:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="songda-order",
        kafka_sasl_password="s3cret",
    )
    producer = make_producer(settings)
    consumer = EventConsumer(
        service="order", sessionmaker=None, bootstrap_servers=settings.kafka_bootstrap_servers, topics=["t"],  # type: ignore[arg-type]
        handlers={}, dlq_producer=producer, security=settings.kafka_security(),
    )  # fmt: skip
    admin = AIOKafkaAdminClient(bootstrap_servers="kafka.example:9096", **settings.kafka_security().client_kwargs())
    for client in (_client(producer), _client(consumer.consumer), _client(admin)):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == mechanism
        assert client._sasl_plain_username == "songda-order"
        assert client._sasl_plain_password == "s3cret"
        assert isinstance(client._ssl_context, ssl.SSLContext)
        assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert client._ssl_context.check_hostname
    epoch = BrokerEpoch("kafka.example:9096", producer, security=settings.kafka_security())
    assert epoch.security == settings.kafka_security()
    await admin.close()
    await consumer.stop()
    await producer.stop()


async def test_plaintext_is_the_default_and_sends_no_credentials() -> None:
    assert KafkaSecurity().client_kwargs() == {"security_protocol": "PLAINTEXT"}
    producer = make_producer(OrderSettings())
    assert producer.client._security_protocol == "PLAINTEXT"
    assert producer.client._ssl_context is None
    await producer.stop()


def test_settings_come_from_the_environment_and_bad_ones_stop_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ORDER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("ORDER_KAFKA_SASL_USERNAME", "songda")
    with pytest.raises(ValidationError, match="needs a SASL username and password"):
        OrderSettings()
    monkeypatch.setenv("ORDER_KAFKA_SASL_PASSWORD", "pw")
    kwargs = OrderSettings().kafka_security().client_kwargs()
    assert kwargs == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "songda",
        "sasl_plain_password": "pw",
    }
    monkeypatch.setenv("ORDER_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValidationError):
        OrderSettings()
    monkeypatch.setenv("ORDER_KAFKA_SASL_PASSWRD", "typo")
    with pytest.raises(UnknownSettingError, match="ORDER_KAFKA_SASL_PASSWORD"):
        OrderSettings()


def test_operator_commands_read_songda_kafka_variables() -> None:
    environ = {
        "SONGDA_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "SONGDA_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "SONGDA_KAFKA_SASL_USERNAME": "ops",
        "SONGDA_KAFKA_SASL_PASSWORD": "pw",
    }
    security = KafkaSecurity.from_environ("SONGDA_", environ)
    assert (security.protocol, security.sasl_mechanism, security.sasl_username) == ("SASL_SSL", "SCRAM-SHA-512", "ops")
    with pytest.raises(KafkaSecurityError, match="none of"):
        KafkaSecurity.from_environ("SONGDA_", {"SONGDA_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(KafkaSecurityError, match="needs its certificate"):
        KafkaSecurity(protocol="SSL", ssl_keyfile="/k.pem")


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """Connects `client` to a TLS server on loopback that requires a client certificate; returns the client's CN."""
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item[0] for item in peer.get("subject", ()))
        if not seen.done():
            seen.set_result(str(subject.get("commonName", "")))
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
        name = await asyncio.wait_for(seen, 10)
        writer.close()
        return name
    finally:
        listener.close()
        await listener.wait_closed()


async def test_tls_trusts_the_configured_ca_and_presents_the_client_certificate(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    broker = authority.issue("kafka-broker", hosts=("localhost",))
    me = authority.issue("songda-order", client=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(authority.cert))
    server.load_cert_chain(broker.cert, broker.key)
    server.verify_mode = ssl.CERT_REQUIRED

    settings = OrderSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(authority.cert),
        kafka_ssl_certfile=str(me.cert),
        kafka_ssl_keyfile=str(me.key),
    )
    producer = make_producer(settings)
    assert await _handshake(server, producer.client._ssl_context) == "songda-order"
    await producer.stop()

    # Without the CA the broker's certificate is refused.
    untrusting = OrderSettings(kafka_security_protocol="SSL").kafka_security().ssl_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, untrusting)
