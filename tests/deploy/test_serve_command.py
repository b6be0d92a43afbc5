"""`songda serve`, the image's command: it serves the named app with uvicorn in its own process (PID 1 in a
container, so it gets SIGTERM itself), and exits cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy.cli import main
from shared.events.topics import SERVICES
from tests.gateway.test_gateway import SIGNING_KEY

SONGDA = Path(sys.executable).parent / "songda"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_uvicorn_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "GATEWAY_SIGNING_KEY": SIGNING_KEY,
        "GATEWAY_DEV_MODE": "true",
        "GATEWAY_WECHAT_MODE": "sandbox",
        **{f"GATEWAY_{service.upper()}_URL": "http://127.0.0.1:9" for service in SERVICES},
    }
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [str(SONGDA), "serve", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while main(["probe", f"http://127.0.0.1:{port}/healthz", "--timeout", "1"]) != 0:
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.2)
        # The process started is the one serving (in a container: PID 1, the one SIGTERM reaches).
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"serve") + 1] == b"gateway"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["service"] == "gateway"
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
        log.close()
    # uvicorn shuts down gracefully, then re-raises the signal, as a process killed by SIGTERM should report.
    assert returncode == -signal.SIGTERM
    assert "Finished server process" in (tmp_path / "gateway.log").read_text()


def test_serve_refuses_an_unknown_process() -> None:
    assert main(["serve", "warehouse"]) == 2
