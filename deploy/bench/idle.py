"""Idle background CPU: each process with no traffic at all."""

from __future__ import annotations

import time
from typing import Any

from deploy.bench.context import Bench

IDLE_SECONDS = 20


def measure_idle(bench: Bench) -> dict[str, Any]:
    usage: dict[str, float] = {}
    with bench.cpu(usage):
        time.sleep(IDLE_SECONDS)
    bench.idle_per_second = {name: seconds / IDLE_SECONDS for name, seconds in usage.items()}
    return {
        "measure": "idle background CPU",
        "seconds": IDLE_SECONDS,
        "cpu_percent_of_a_core": {name: round(share * 100, 2) for name, share in bench.idle_per_second.items()},
    }
