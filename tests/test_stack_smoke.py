"""The launcher end to end: `songda run` brings the platform up, survives a crashed predecessor, and leaves
nothing running after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.stack.demo import run_demo
from shared.stack.ports import free_port
from shared.stack.processes import process_cmdline

pytestmark = pytest.mark.stack


def _launch(state_dir: Path, gateway_port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONGDA_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "run", "--state-dir", str(state_dir), "--gateway-port", str(gateway_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    printed: dict[str, str] = {}
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"launcher exited early ({process.poll()}); printed {printed}")
        name, _, value = line.partition(": ")
        printed[name.strip()] = value.strip()
        if line.startswith("Ctrl-C"):
            return process, printed
    raise AssertionError("launcher did not report ready in time")


def _state(state_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((state_dir / "run" / "stack.json").read_text())
    return state


def _started_pids(state_dir: Path) -> list[int]:
    """Every process the launcher started, PostgreSQL's postmaster included."""
    state = _state(state_dir)
    postmaster = Path(state["postgres_data_dir"]) / "postmaster.pid"
    return [child["pid"] for child in state["children"]] + [int(postmaster.read_text().split()[0])]


def _our_processes(data_dir: str, pids: list[int]) -> list[str]:
    """Processes still alive among those started, plus any PostgreSQL serving this data dir."""
    alive = [process_cmdline(pid) for pid in pids if process_cmdline(pid)]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and data_dir in process_cmdline(int(proc.name)):
            alive.append(process_cmdline(int(proc.name)))
    return alive


def test_run_survives_a_crashed_run_and_stops_cleanly(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port = free_port()

    crashed, printed = _launch(state_dir, port)
    assert printed["gateway"] == f"http://127.0.0.1:{port}"
    assert {"token customer", "token merchant", "token rider", "token ops", "docs"} <= printed.keys()
    leftovers = _started_pids(state_dir)
    crashed.send_signal(signal.SIGKILL)  # the launcher dies; its children and PostgreSQL live on
    crashed.wait()
    assert crashed.stdout is not None
    crashed.stdout.close()
    assert all(process_cmdline(pid) for pid in leftovers)

    second, printed = _launch(state_dir, port)  # same data dir, same port still held a moment ago
    try:
        assert all(not process_cmdline(pid) for pid in leftovers)
        ready = httpx.get(printed["gateway"] + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert set(ready.json()["upstreams"]) == {"order", "dispatch", "redemption", "aftersales", "notify"}
        merchant = {"Authorization": "Bearer " + printed["token merchant"]}
        assert httpx.get(printed["gateway"] + "/v1/stores/demo-store", headers=merchant, timeout=10).status_code == 200
        # The demo walk, end to end through the gateway: order, WeChat Pay sandbox and its signed notifications,
        # merchant workflow, codes issued and redeemed across services over Kafka, the refund timer.
        said: list[str] = []
        run_demo(state_dir, say=said.append)
        walk = "\n".join(said)
        assert "signed notification received → paid" in walk
        assert "counter scan → redeemed" in walk  # the code came over Kafka: order.paid → redemption
        assert "a second scan is refused: /problems/already-redeemed" in walk
        assert "order is completed" in walk  # and back: code.redeemed → order
        assert "order is refunded: " in walk
        # Dispatch: a carrier (the simulator, calling back through the gateway, signed) and an own rider whose
        # handover is the customer's finish code, verified by the redemption service.
        assert re.search(r"(dada|sf) +delivered", walk), walk
        assert "handover verified by the redemption service → delivery delivered" in walk
        started = _started_pids(state_dir)
        data_dir = _state(state_dir)["postgres_data_dir"]
    finally:
        second.send_signal(signal.SIGINT)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert "stopped." in output
    assert _our_processes(data_dir, started) == []
    assert not (state_dir / "run" / "stack.json").exists()
