"""Starts and stops the whole platform: PostgreSQL, the broker, and the processes of `table.py` (sandboxes, every
service, the gateway).

PostgreSQL and the broker are embedded unless `SONGDA_POSTGRES_URL` / `SONGDA_KAFKA_BOOTSTRAP_SERVERS` name real
ones. A state file records what was started, so a run after a crash first stops what the crashed one left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from deploy.local import table
from deploy.local.broker import TansuBroker, ensure_topics
from deploy.local.keys import demo_admin_password
from deploy.local.ports import free_port
from deploy.local.postgres import EmbeddedPostgres
from deploy.local.processes import AppProcess, process_cmdline, terminate_group
from deploy.local.sandboxes.carriers.simulator import NAME as CARRIER_SIMULATOR
from deploy.local.seed import seed_demo_admin, seed_demo_carriers, seed_demo_notices, seed_demo_store
from deploy.local.tokens import demo_tokens
from deploy.local.wiring import GATEWAY, Wiring
from shared import migrations
from shared.events.topics import SERVICES, all_topics


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
            # 0: any free port (several stacks started at once, as the tests do, can't both take the default).
            postgres_port=int(env.get("SONGDA_POSTGRES_PORT", "55432")),
            broker_port=int(env.get("SONGDA_BROKER_PORT", "59092")),
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


def create_databases(options: StackOptions, infra: Infra) -> dict[str, str]:
    """Creates each service's database, and the gateway's, if missing; returns the component → URL map."""
    names = {name: f"{options.database_prefix}{name}" for name in (*options.services, GATEWAY)}
    asyncio.run(_create_databases(infra.postgres_url, list(names.values())))
    return {service: database_url(infra.postgres_url, name) for service, name in names.items()}


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in this process's environment for the block (a migration reads its service's settings from it)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
        return self.app(GATEWAY)

    def start(self, ready_timeout: float = 90.0) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop_leftovers()
        self.infra = start_infra(self.options)
        self._write_state()
        database_urls = create_databases(self.options, self.infra)
        entries = table.wanted(self.options.services)
        taken: set[int] = set()
        ports = {
            entry.name: _unused_port(taken, self.options.gateway_port if entry.front else None) for entry in entries
        }
        wiring = Wiring(
            state_dir=self.options.state_dir,
            dev_mode=self.options.dev_mode,
            urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            database_urls=database_urls,
            bootstrap_servers=self.infra.bootstrap_servers,
            kafka_enable_idempotence=self.infra.kafka_enable_idempotence,
        )
        environments = table.environments(entries, wiring)
        for component, url in database_urls.items():
            with _environment(environments[component]):
                migrations.upgrade(component, url)
        logs = self.options.state_dir / "logs"
        for entry in entries:
            self.apps.append(
                AppProcess(
                    entry.name, entry.app, ports[entry.name], environments[entry.name], logs / f"{entry.name}.log"
                )
            )
        for app in self.apps:
            app.start()
        self._write_state()
        deadline = time.monotonic() + ready_timeout
        for app in self.apps:
            app.wait_ready(deadline)
        if self.options.seed_demo:
            ops = self.demo_tokens(ttl_seconds=300)["ops"]
            seed_demo_admin(self.gateway.url, ops, demo_admin_password(self.options.state_dir))
        if self.options.seed_demo and "order" in self.options.services:
            tokens = self.demo_tokens(ttl_seconds=300)
            merchant = tokens["merchant"]
            seed_demo_store(self.gateway.url, merchant)
            if "dispatch" in self.options.services:
                seed_demo_carriers(self.gateway.url, wiring.urls[CARRIER_SIMULATOR], merchant)
            if "notify" in self.options.services:
                seed_demo_notices(self.gateway.url, tokens["ops"])

    def sandboxes(self) -> list[tuple[str, AppProcess]]:
        """The running sandboxes, each with the title `songda run` prints it by."""
        titles = {entry.name: entry.title for entry in table.PROCESSES if entry.title}
        return [(titles[app.name], app) for app in self.apps if app.name in titles]

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
            if "shared.serving" in cmdline or "tansu" in cmdline:
                terminate_group(child["pid"], timeout=10)
        self.state_file.unlink(missing_ok=True)

    def demo_tokens(self, ttl_seconds: int = 12 * 3600) -> dict[str, str]:
        return demo_tokens(self.options.state_dir, ttl_seconds)


def _unused_port(taken: set[int], preferred: int | None = None) -> int:
    """`preferred` when it is free, else any free port not handed out yet in this start."""
    while True:
        port = free_port(preferred)
        preferred = None
        if port not in taken:
            taken.add(port)
            return port
