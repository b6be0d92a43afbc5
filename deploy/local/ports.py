from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except (OSError, OverflowError):  # taken, or not a port at all
            return False
        return True


# Handed out below the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by
# default), above the usual services' ports and above 10080, the last port browsers refuse to open (a gateway there
# could not be browsed).
_LOWEST = 10_100
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _first_ephemeral() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # the IANA dynamic range's start, where other systems begin theirs


# "k/n": this process takes its ports from the k-th (from 0) of n equal slices of that range, so that stacks started at
# once by processes given different slices (the test run's workers, each with its stacks) never pick the same port
# between one's look and its server's bind.
PORT_SHARE_ENV = "SONGDA_PORT_SHARE"


def _range_to_pick_from() -> tuple[int, int]:
    lowest, highest = _LOWEST, _first_ephemeral()
    index, _, count = os.environ.get(PORT_SHARE_ENV, "").partition("/")
    if index.isdigit() and count.isdigit() and int(count) > 0:  # anything else: the whole range
        width = (highest - lowest) // int(count)
        lowest += int(index) % int(count) * width
        highest = lowest + width
    return lowest, highest


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` when it is free, otherwise a free port below the kernel's ephemeral range. A port from that range
    (what binding port 0 hands out) may become the local end of any outgoing connection between this look and the
    server's own bind, which then fails: that took a test run's dispatch server, whose port must be known before it
    starts (the carrier simulator calls it back), and every later test of its worker with it. Within this process's
    share of the range (`PORT_SHARE_ENV`) when it is given one."""
    if preferred and is_free(preferred, host):
        return preferred
    lowest, highest = _range_to_pick_from()
    if highest > lowest + 1_000:
        for _ in range(200):
            port = random.randrange(lowest, highest)  # noqa: S311 - a port, not a secret
            if is_free(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
