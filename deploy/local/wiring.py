"""What an entry of the local stack's table is: a process, and the environments it gives itself and the others.

An entry's `wire` is called once per start with the stack's `Wiring` (state dir, infrastructure, every running
process's URL) and returns environments by process name: its own, and what it contributes to other processes (the
WeChat Pay sandbox gives the order service its URL and keys, each service gives the gateway its URL). Sandbox
modules import this module, not the table, so the table can import them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

GATEWAY = "gateway"
# The mini-program the local stack plays: the gateway's sandbox logins and the carrier simulator's WeChat account.
DEMO_WECHAT_APPID = "wx-songda-demo"

Environments = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Wiring:
    """What environments are made of."""

    state_dir: Path
    dev_mode: bool
    urls: Mapping[str, str]  # every process that runs, by name
    database_urls: Mapping[str, str]  # by service, and the gateway's
    bootstrap_servers: str
    kafka_enable_idempotence: bool


@dataclass(frozen=True)
class Entry:
    """One process of the local stack."""

    name: str
    app: str  # "module:factory", served by uvicorn
    wire: Callable[[Wiring], Environments]
    # It runs when one of these services is asked for (a service serves itself, a sandbox its clients); empty:
    # always (the gateway).
    serves: tuple[str, ...] = ()
    # A sandbox's line in what `songda run` prints, "<title>: <url>".
    title: str = ""
    # The stack's front door: it gets the options' gateway port when free; the others any free port.
    front: bool = False
