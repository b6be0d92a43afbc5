"""The faults, injected one after another while the load runs: kill -9 of each service and of the gateway (then
restarted as the launcher starts it), the broker paused (SIGSTOP) for 30 s, and PostgreSQL's postmaster killed -9
and started again (crash recovery from its WAL: the instance is the durable one, fsync on)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.chaos.stack import Bench

SERVICES_KILLED = ("order", "dispatch", "redemption", "aftersales", "notify", "gateway")
BROKER_PAUSE_SECONDS = 30.0
READY_WITHIN = 90.0


@dataclass
class Fault:
    name: str
    inject: Callable[[Bench], str]  # does it, waits for the stack to be whole again, says what happened


@dataclass
class Injected:
    name: str
    at: float  # seconds since the load started
    took: float
    outcome: str
    error: str | None = None


@dataclass
class FaultLog:
    injected: list[Injected] = field(default_factory=list)


def kill_app(name: str) -> Fault:
    def inject(bench: Bench) -> str:
        app = bench.stack.app(name)
        assert app.process is not None
        old = app.process.pid
        os.killpg(old, signal.SIGKILL)  # the whole group: uvicorn and anything it started
        app.process.wait(10)
        app.start()  # as the launcher starts it: same command, port and environment
        app.wait_ready(time.monotonic() + READY_WITHIN)
        assert app.process is not None
        return f"pid {old} killed -9, restarted as pid {app.process.pid}, ready"

    return Fault(f"kill -9 {name}", inject)


def pause_broker(bench: Bench) -> str:
    infra = bench.stack.infra
    assert infra is not None
    assert infra.broker is not None
    infra.broker.pause()
    try:
        time.sleep(BROKER_PAUSE_SECONDS)
    finally:
        infra.broker.resume()
    return f"broker SIGSTOP for {BROKER_PAUSE_SECONDS:.0f} s, then SIGCONT"


def crash_postgres(bench: Bench) -> str:
    infra = bench.stack.infra
    assert infra is not None
    assert infra.postgres is not None
    postgres = infra.postgres
    assert not postgres.fast, "a crash test needs the durable PostgreSQL (fsync on)"
    postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    # The backends notice their postmaster is gone and exit; start() retries while the old pid file blocks it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(postmaster):
        time.sleep(0.1)
    postgres.start()
    new = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return f"postmaster {postmaster} killed -9, restarted as {new} (crash recovery)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child not reaped by us stays a zombie: it is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_faults(services: tuple[str, ...]) -> list[Fault]:
    killed = [name for name in SERVICES_KILLED if name in services or name == "gateway"]
    return [
        *(kill_app(name) for name in killed),
        Fault(f"pause broker {BROKER_PAUSE_SECONDS:.0f} s", pause_broker),
        Fault("kill -9 PostgreSQL", crash_postgres),
    ]


def inject(fault: Fault, bench: Bench, since: float) -> Injected:
    """Runs one fault (blocking: call it in a thread), recording when and what happened; a fault that fails to
    inject or to recover is recorded as such, and the run goes on (the invariants will judge what it left)."""
    at = time.monotonic()
    try:
        outcome, error = fault.inject(bench), None
    except Exception as exc:
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
    return Injected(fault.name, round(at - since, 1), round(time.monotonic() - at, 1), outcome, error)
