"""The bench's own stack (the launcher, on free ports and its own state dir) and what every measure needs of it."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from deploy.bench.procs import Processes, delta
from deploy.local.launcher import Stack, StackOptions, database_url
from deploy.local.ports import free_port
from deploy.local.postgres import fallback_data_dir

# The gateway's per-IP and per-principal limits are meant for anonymous clients and people: the load comes from one
# address and a handful of tokens, so the bench lifts them (the hot paths are measured, not the limiter).
BENCH_ENV = {
    "GATEWAY_RATE_LIMIT_IP_PER_SECOND": "1000000",
    "GATEWAY_RATE_LIMIT_IP_BURST": "1000000",
    "GATEWAY_RATE_LIMIT_PRINCIPAL_PER_SECOND": "1000000",
    "GATEWAY_RATE_LIMIT_PRINCIPAL_BURST": "1000000",
}


@dataclass
class Bench:
    stack: Stack
    workdir: Path
    seconds: int
    tokens: dict[str, str] = field(default_factory=dict)
    idle_per_second: dict[str, float] = field(default_factory=dict)

    @property
    def processes(self) -> Processes:
        pids = {app.name: app.process.pid for app in self.stack.apps if app.process}
        infra = self.stack.infra
        assert infra is not None
        if infra.broker and infra.broker.process:
            pids["tansu"] = infra.broker.process.pid
        postmaster = None
        if infra.postgres:
            postmaster = int((infra.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        return Processes(pids, postmaster)

    @property
    def postgres_url(self) -> str:
        assert self.stack.infra is not None
        return self.stack.infra.postgres_url

    @property
    def bootstrap_servers(self) -> str:
        assert self.stack.infra is not None
        return self.stack.infra.bootstrap_servers

    def url(self, app: str) -> str:
        return self.stack.app(app).url

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def connect(self, service: str) -> asyncpg.Connection:
        return await asyncpg.connect(database_url(self.postgres_url, f"songda_{service}", "postgresql"))

    @contextlib.contextmanager
    def cpu(self, usage: dict[str, float]) -> Iterator[None]:
        """Fills `usage` with each process's CPU seconds spent inside the block."""
        processes = self.processes
        before = processes.sample()
        yield
        usage.update(delta(before, processes.sample()))


@contextlib.contextmanager
def bench_stack(workdir: Path, seconds: int) -> Iterator[Bench]:
    state_dir = workdir / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    shutil.rmtree(fallback_data_dir(state_dir), ignore_errors=True)
    os.environ.update(BENCH_ENV)
    options = StackOptions(
        state_dir=state_dir, gateway_port=free_port(), postgres_port=free_port(), broker_port=free_port()
    )
    stack = Stack(options)
    try:
        started = time.monotonic()
        stack.start()
        print(f"stack started in {time.monotonic() - started:.0f} s (state and logs in {state_dir})", flush=True)
        bench = Bench(stack, workdir, seconds, tokens=stack.demo_tokens(ttl_seconds=3600))
        yield bench
    finally:
        stack.stop()
        shutil.rmtree(fallback_data_dir(state_dir), ignore_errors=True)


def per_operation(usage: dict[str, float], operations: int) -> dict[str, Any]:
    """CPU milliseconds per operation for each process that spent any."""
    if not operations:
        return {}
    return {name: round(seconds * 1000 / operations, 3) for name, seconds in usage.items() if seconds > 0}
