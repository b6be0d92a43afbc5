"""CPU seconds per process of the stack, read from /proc/<pid>/stat before and after each measure."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the state on; the name may hold spaces


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """utime + stime (and the reaped children's, for PostgreSQL's backends that have exited)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


@dataclass
class Processes:
    """The stack's processes by name; PostgreSQL counts the postmaster, its live backends and those reaped."""

    pids: dict[str, int]
    postmaster: int | None

    def sample(self) -> dict[str, float]:
        usage = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.postmaster:
            usage["postgres"] = cpu_seconds(self.postmaster, with_children=True) + sum(
                cpu_seconds(pid) for pid in children_of(self.postmaster)
            )
        return usage


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: max(after.get(name, 0.0) - before.get(name, 0.0), 0.0) for name in before}
