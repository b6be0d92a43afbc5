"""The whole platform launched as a user launches it (`songda run`), for tests that need every process: the stack
smoke tests and the browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deploy.local.demo import Walk
from deploy.local.ports import PORT_SHARE_ENV


def launch(
    state_dir: Path, gateway_port: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONGDA_") or k == PORT_SHARE_ENV}
    # Stacks of other tests start beside this one: none takes the default ports, so two can't pick the same.
    env |= {"SONGDA_POSTGRES_PORT": "0", "SONGDA_BROKER_PORT": "0"} | (extra_env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "run", "--state-dir", str(state_dir), "--gateway-port", str(gateway_port)],
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


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def walk_of(printed: dict[str, str]) -> Walk:
    tokens = {role: printed[f"token {role}"] for role in ("customer", "merchant", "rider", "ops")}
    return Walk(printed["gateway"], printed["wechatpay sandbox"], tokens, say=lambda _: None)
