"""Starts and stops the whole platform: PostgreSQL, the broker, every service and the gateway.

PostgreSQL and the broker are embedded unless `SONGDA_POSTGRES_URL` / `SONGDA_KAFKA_BOOTSTRAP_SERVERS` name real
ones. A state file records what was started, so a run after a crash first stops what the crashed one left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shared import migrations
from shared.auth import Principal, Role
from shared.clock import SystemClock
from shared.events.topics import SERVICES, all_topics
from shared.keys import generate_signing_key, public_pem
from shared.stack.broker import TansuBroker, ensure_topics
from shared.stack.ports import free_port
from shared.stack.postgres import EmbeddedPostgres
from shared.stack.processes import AppProcess, process_cmdline, terminate_group

DEMO_MERCHANT = "demo-merchant"
DEMO_STORE = "demo-store"
WECHATPAY_SANDBOX = "wechatpay-sandbox"
CARRIER_SIMULATOR = "carrier-simulator"
DEMO_WECHAT_APPID = "wx-songda-demo"


@dataclass
class StackOptions:
    state_dir: Path
    gateway_port: int = 8000
    postgres_port: int = 55432
    broker_port: int = 59092
    postgres_url: str | None = None  # a server URL (no database): postgresql://user@host:port
    kafka_bootstrap_servers: str | None = None
    kafka_enable_idempotence: bool = True  # for a real Kafka; always off for the embedded Tansu
    database_prefix: str = "songda_"
    dev_mode: bool = True
    services: tuple[str, ...] = SERVICES
    seed_demo: bool = True
    # The embedded PostgreSQL without fsync: loses commits on a crash. For the test suite only.
    fast_postgres: bool = False

    @classmethod
    def from_env(cls, state_dir: Path, **overrides: object) -> StackOptions:
        env = os.environ
        options = cls(
            state_dir=state_dir,
            gateway_port=int(env.get("SONGDA_GATEWAY_PORT", "8000")),
            postgres_url=env.get("SONGDA_POSTGRES_URL") or None,
            kafka_bootstrap_servers=env.get("SONGDA_KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_enable_idempotence=env.get("SONGDA_KAFKA_ENABLE_IDEMPOTENCE", "true").lower() == "true",
            database_prefix=env.get("SONGDA_DATABASE_PREFIX", "songda_"),
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        return options


def database_url(server_url: str, database: str, driver: str = "postgresql+asyncpg") -> str:
    parts = urlsplit(server_url)
    return urlunsplit((driver, parts.netloc, "/" + database, parts.query, ""))


async def _create_databases(server_url: str, names: list[str]) -> None:
    connection = await asyncpg.connect(database_url(server_url, "postgres", "postgresql"))
    try:
        existing = {r["datname"] for r in await connection.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@dataclass
class Infra:
    """PostgreSQL and the broker, embedded or external."""

    postgres_url: str
    bootstrap_servers: str
    kafka_enable_idempotence: bool
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None

    def stop(self) -> None:
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()


def start_infra(options: StackOptions) -> Infra:
    logs = options.state_dir / "logs"
    postgres = None
    if options.postgres_url:
        postgres_url = options.postgres_url
    else:
        postgres = EmbeddedPostgres(options.state_dir, free_port(options.postgres_port), fast=options.fast_postgres)
        postgres.start()
        postgres_url = postgres.url
    broker = None
    try:
        if options.kafka_bootstrap_servers:
            bootstrap, idempotence = options.kafka_bootstrap_servers, options.kafka_enable_idempotence
        else:
            broker = TansuBroker(free_port(options.broker_port), logs / "tansu.log")
            broker.start()
            bootstrap, idempotence = broker.bootstrap_servers, False
        ensure_topics(bootstrap, all_topics())
    except BaseException:
        if postgres:
            postgres.stop()
        raise
    return Infra(postgres_url, bootstrap, idempotence, postgres, broker)


def prepare_databases(options: StackOptions, infra: Infra) -> dict[str, str]:
    """Creates each service's database if missing and migrates it; returns the service → URL map."""
    names = {service: f"{options.database_prefix}{service}" for service in options.services}
    asyncio.run(_create_databases(infra.postgres_url, list(names.values())))
    urls = {service: database_url(infra.postgres_url, name) for service, name in names.items()}
    for service, url in urls.items():
        migrations.upgrade(service, url)
    return urls


def _ensure_private_key(path: Path) -> str:
    """A private key kept at `path` (0600), made once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_signing_key())
    return path.read_text()


def ensure_signing_key(state_dir: Path) -> Path:
    path = state_dir / "keys" / "jwt-signing.pem"
    _ensure_private_key(path)
    return path


def ensure_vault_key(state_dir: Path, service: str) -> str:
    """A service's vault key for the local stack, made once and kept (a new one would orphan sealed secrets)."""
    path = state_dir / "keys" / f"{service}-vault.key"
    if not path.exists():
        from shared.vault import new_key

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key())
        path.chmod(0o600)
    return path.read_text().strip()


def ensure_handover_key(state_dir: Path) -> tuple[str, str]:
    """Dispatch's handover-voucher key pair for the local stack (private PEM, public PEM), made once and kept."""
    private = _ensure_private_key(state_dir / "keys" / "dispatch-handover.pem")
    key = serialization.load_pem_private_key(private.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return private, public_pem(key)


@dataclass
class Stack:
    options: StackOptions
    infra: Infra | None = None
    apps: list[AppProcess] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.options.state_dir / "run" / "stack.json"

    @property
    def gateway(self) -> AppProcess:
        return self.apps[-1]

    def start(self, ready_timeout: float = 90.0) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop_leftovers()
        self.infra = start_infra(self.options)
        self._write_state()
        # The redemption migration seals the QR secrets of codes kept from an earlier run with this key.
        redemption_vault_key = ensure_vault_key(self.options.state_dir, "redemption")
        os.environ.setdefault("REDEMPTION_VAULT_KEY", redemption_vault_key)
        urls = prepare_databases(self.options, self.infra)
        key_file = ensure_signing_key(self.options.state_dir)
        from gateway.auth import load_signing_key
        from gateway.settings import GatewaySettings

        public_key = public_pem(load_signing_key(GatewaySettings(signing_key_file=str(key_file))))
        logs = self.options.state_dir / "logs"
        gateway_env = {
            "GATEWAY_SIGNING_KEY_FILE": str(key_file),
            "GATEWAY_DEV_MODE": str(self.options.dev_mode).lower(),
        }
        if self.options.dev_mode:
            # Local logins without a WeChat app, and the console's dev server.
            gateway_env |= {
                "GATEWAY_WECHAT_MODE": "sandbox",
                "GATEWAY_WECHAT_APPID": DEMO_WECHAT_APPID,
                "GATEWAY_CORS_ORIGINS": '["http://localhost:5173", "http://127.0.0.1:5173"]',
            }
        taken: set[int] = set()
        gateway_port = free_port(self.options.gateway_port)
        taken.add(gateway_port)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        # The providers we cannot reach, played locally in their own wire formats.
        from services.order.payment.sandbox import local_environment

        sandbox_port = _unused_port(taken)
        sandbox_env, order_payment_env = local_environment(
            self.options.state_dir / "keys",
            sandbox_url=f"http://127.0.0.1:{sandbox_port}",
            notify_url=f"{gateway_url}/v1/payments/wechatpay/callback",
        )
        self.apps.append(
            AppProcess(
                WECHATPAY_SANDBOX,
                "services.order.payment.sandbox:create_app",
                sandbox_port,
                sandbox_env,
                logs / "wechatpay-sandbox.log",
            )
        )
        from services.dispatch.carriers.simulator import credentials

        simulator_port = _unused_port(taken)
        simulator_url = f"http://127.0.0.1:{simulator_port}"
        simulator_env = {"CARRIER_SIM_CALLBACK_URL": gateway_url, "CARRIER_SIM_STEP_SECONDS": "1.5"}
        self.apps.append(
            AppProcess(
                CARRIER_SIMULATOR,
                "services.dispatch.carriers.simulator:create_app",
                simulator_port,
                simulator_env,
                logs / "carrier-simulator.log",
            )
        )
        ports = {service: _unused_port(taken) for service in self.options.services}
        handover_private, handover_public = ensure_handover_key(self.options.state_dir)
        dispatch_env = {
            "DISPATCH_VAULT_KEY": ensure_vault_key(self.options.state_dir, "dispatch"),
            "DISPATCH_HANDOVER_SIGNING_KEY": handover_private,
            "DISPATCH_CARRIER_SANDBOX_URL": simulator_url,
            "DISPATCH_WECHAT_APPID": DEMO_WECHAT_APPID,
            "DISPATCH_WECHAT_SECRET": credentials(
                os.environ.get("CARRIER_SIM_MASTER_KEY", "songda-carrier-simulator"), "wechat", DEMO_WECHAT_APPID
            ).app_secret,
            "DISPATCH_REDEMPTION_URL": f"http://127.0.0.1:{ports.get('redemption', 0)}",
        }
        redemption_env = {
            "REDEMPTION_VAULT_KEY": redemption_vault_key,
            "REDEMPTION_HANDOVER_PUBLIC_KEYS": handover_public,
        }
        for service in self.options.services:
            prefix = service.upper()
            port = ports[service]
            env = {
                f"{prefix}_DATABASE_URL": urls[service],
                f"{prefix}_KAFKA_BOOTSTRAP_SERVERS": self.infra.bootstrap_servers,
                f"{prefix}_KAFKA_ENABLE_IDEMPOTENCE": str(self.infra.kafka_enable_idempotence).lower(),
                f"{prefix}_JWT_PUBLIC_KEYS": public_key,
                # The gateway runs on this host: its X-Forwarded-For is believed, anyone else's is not.
                f"{prefix}_TRUSTED_GATEWAYS": '["127.0.0.1/32"]',
            }
            if service == "order":
                env |= order_payment_env
            if service == "dispatch":
                env |= dispatch_env
            if service == "redemption":
                env |= redemption_env
            self.apps.append(
                AppProcess(service, f"services.{service}.app:create_app", port, env, logs / f"{service}.log")
            )
            gateway_env[f"GATEWAY_{prefix}_URL"] = f"http://127.0.0.1:{port}"
        self.apps.append(
            AppProcess("gateway", "gateway.app:create_app", gateway_port, gateway_env, logs / "gateway.log")
        )
        for app in self.apps:
            app.start()
        self._write_state()
        deadline = time.monotonic() + ready_timeout
        for app in self.apps:
            app.wait_ready(deadline)
        if self.options.seed_demo and "order" in self.options.services:
            from shared.stack.demo import seed_demo_carriers, seed_demo_store

            merchant = self.demo_tokens(ttl_seconds=300)["merchant"]
            seed_demo_store(self.gateway.url, merchant)
            if "dispatch" in self.options.services:
                seed_demo_carriers(self.gateway.url, simulator_url, merchant)

    def app(self, name: str) -> AppProcess:
        return next(app for app in self.apps if app.name == name)

    def stop(self) -> None:
        for app in reversed(self.apps):
            app.stop()
        self.apps.clear()
        if self.infra:
            self.infra.stop()
            self.infra = None
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def dead_apps(self) -> list[AppProcess]:
        return [app for app in self.apps if not app.alive()]

    def _write_state(self) -> None:
        children = [{"name": app.name, "pid": app.process.pid} for app in self.apps if app.process]
        if self.infra and self.infra.broker and self.infra.broker.process:
            children.append({"name": "tansu", "pid": self.infra.broker.process.pid})
        urls = {app.name: app.url for app in self.apps}
        state: dict[str, object] = {"launcher_pid": os.getpid(), "children": children, "urls": urls}
        if self.infra and self.infra.postgres:
            state["postgres_data_dir"] = str(self.infra.postgres.data_dir)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state))

    def stop_leftovers(self) -> None:
        """Stops what a crashed launcher left running (its embedded PostgreSQL is stopped by its own start)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        launcher = state.get("launcher_pid")
        if launcher and launcher != os.getpid() and "songda" in process_cmdline(launcher):
            raise RuntimeError(f"the stack is already running (launcher pid {launcher}); stop it first")
        for child in state.get("children", []):
            cmdline = process_cmdline(child["pid"])
            if "uvicorn" in cmdline or "tansu" in cmdline:
                terminate_group(child["pid"], timeout=10)
        self.state_file.unlink(missing_ok=True)

    def demo_tokens(self, ttl_seconds: int = 12 * 3600) -> dict[str, str]:
        from gateway.auth import TokenIssuer, load_signing_key
        from gateway.settings import GatewaySettings

        settings = GatewaySettings(signing_key_file=str(self.options.state_dir / "keys" / "jwt-signing.pem"))
        issuer = TokenIssuer(
            load_signing_key(settings),
            key_id=settings.signing_key_id,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=ttl_seconds,
            clock=SystemClock(),
        )
        principals = {
            "customer": Principal(sub="demo-customer", role=Role.customer),
            "merchant": Principal(
                sub="demo-merchant-staff", role=Role.merchant, merchant_id=DEMO_MERCHANT, store_ids=[DEMO_STORE]
            ),
            "rider": Principal(sub="demo-rider", role=Role.rider, merchant_id=DEMO_MERCHANT),
            "ops": Principal(sub="demo-ops", role=Role.ops),
        }
        return {name: issuer.issue(principal) for name, principal in principals.items()}


def _unused_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port
