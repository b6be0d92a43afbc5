"""The launcher end to end: `songda run` brings the platform up, survives a crashed predecessor, leaves nothing
running after Ctrl-C, loses no event across a restart, and runs from a checkout PostgreSQL's user cannot enter."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from deploy.local.demo import run_demo
from deploy.local.launcher import database_url
from deploy.local.ports import free_port
from deploy.local.postgres import INSTALL, PACKAGE, _wheel_digest, fallback_data_dir
from deploy.local.processes import process_cmdline
from deploy.local.seed import DEMO_STORE_ID
from tests.platform import launch, stop, walk_of

pytestmark = pytest.mark.stack


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


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    yield state
    # As root the data lives outside tmp_path (the PostgreSQL user cannot enter it): removed here.
    shutil.rmtree(fallback_data_dir(state), ignore_errors=True)


def test_run_survives_a_crashed_run_and_stops_cleanly(state_dir: Path) -> None:
    port = free_port()

    crashed, printed = launch(state_dir, port)
    assert printed["gateway"] == f"http://127.0.0.1:{port}"
    assert {"token customer", "token merchant", "token rider", "token ops", "docs"} <= printed.keys()
    leftovers = _started_pids(state_dir)
    crashed.send_signal(signal.SIGKILL)  # the launcher dies; its children and PostgreSQL live on
    crashed.wait()
    assert crashed.stdout is not None
    crashed.stdout.close()
    assert all(process_cmdline(pid) for pid in leftovers)

    second, printed = launch(state_dir, port)  # same data dir, same port still held a moment ago
    try:
        assert all(not process_cmdline(pid) for pid in leftovers)
        ready = httpx.get(printed["gateway"] + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert set(ready.json()["upstreams"]) == {"order", "dispatch", "redemption", "aftersales", "notify"}
        merchant = {"Authorization": "Bearer " + printed["token merchant"]}
        assert httpx.get(printed["gateway"] + "/v1/stores/demo-store", headers=merchant, timeout=10).status_code == 200
        # The demo admin, seeded once, signs in with the printed password after the restart too.
        admin = re.match(r"login=(\S+) password=(\S+)", printed["demo admin"])
        assert admin is not None, printed
        login, password = admin.groups()
        signed_in = httpx.post(
            printed["gateway"] + "/v1/auth/sign-in", json={"login": login, "password": password}, timeout=10
        )
        assert (signed_in.status_code, signed_in.json()["merchant_id"]) == (200, "demo-merchant"), signed_in.text
        admin_token = {"Authorization": "Bearer " + signed_in.json()["access_token"]}
        assert httpx.get(printed["gateway"] + "/v1/orders", headers=admin_token, timeout=10).status_code == 200
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
        # After-sales through the gateway: a partial refund approved by the merchant, refunded by the order service.
        assert re.search(r"case is refunded: agreed ¥3\.00, refunded ¥3\.00", walk), walk
        # Dispatch: a carrier (the simulator, calling back through the gateway, signed) and an own rider whose
        # handover is the customer's finish code, verified by the redemption service.
        assert re.search(r"(dada|sf) +delivered", walk), walk
        assert "handover verified by the redemption service → delivery delivered" in walk
        # Notify: the carrier's delivery notified on the customer's grants, the own rider's (grants spent) by SMS.
        assert re.search(r"delivered +sent +wechat", walk), walk
        assert re.search(r"delivered +sent +sms", walk), walk
        # The first order's live stream through the gateway, from its payment to its delivery.
        first_order = re.findall(r"order (\S+):$", walk, re.MULTILINE)[0]
        customer = {"Authorization": "Bearer " + printed["token customer"]}
        stream = _read_stream(printed["gateway"] + f"/v1/notifications/streams/orders/{first_order}", customer,
                              until="delivery.delivered")  # fmt: skip
        assert "order.paid" in stream, stream
        assert "delivery.delivered" in stream, stream
        started = _started_pids(state_dir)
        data_dir = _state(state_dir)["postgres_data_dir"]
    finally:
        second.send_signal(signal.SIGINT)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert "stopped." in output
    assert _our_processes(data_dir, started) == []
    assert not (state_dir / "run" / "stack.json").exists()


def _read_stream(url: str, headers: dict[str, str], until: str, within: float = 20.0) -> str:
    """An SSE stream's text up to the first line holding `until` (or `within` seconds)."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    with httpx.stream("GET", url, headers=headers, timeout=15) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            lines.append(line)
            if until in line or time.monotonic() > deadline:
                break
    return "\n".join(lines)


async def _accepted_published(postgres_url: str, order_id: str) -> bool:
    connection = await asyncpg.connect(database_url(postgres_url, "songda_order", "postgresql"))
    try:
        published = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE type = 'order.accepted.v1' AND key = $1 AND published_at IS NOT NULL",
            order_id,
        )
    finally:
        await connection.close()
    return bool(published)


def test_an_event_published_just_before_a_restart_takes_effect_once_after_it(state_dir: Path) -> None:
    port = free_port()
    # The redemption service runs but consumes nothing: order.accepted (which issues a pickup order's code) reaches
    # the broker and nobody reads it.
    first, printed = launch(state_dir, port, extra_env={"REDEMPTION_CONSUMES": "[]"})
    walk = walk_of(printed)
    try:
        sku = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"][0]["skus"][0]["id"]
        order = walk.place_and_pay("pickup", [{"sku_id": sku, "quantity": 1}])
        walk.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
        deadline = time.monotonic() + 20
        while not asyncio.run(_accepted_published(printed["postgres"], order["id"])):
            assert time.monotonic() < deadline, "order.accepted was never published"
            time.sleep(0.2)
    finally:
        walk.close()
        stop(first)

    second, printed = launch(state_dir, port)  # a fresh broker: the relays republish, the consumers catch up
    walk = walk_of(printed)
    try:
        code = walk.wait_code(order["id"], within=60)
        assert code["order_id"] == order["id"]
        codes = walk.call("customer", "GET", f"/v1/codes?order_id={order['id']}")["items"]
        assert len(codes) == 1
    finally:
        walk.close()
        stop(second)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to a system user")
def test_run_from_a_checkout_the_postgres_user_cannot_enter(tmp_path: Path) -> None:
    """The bundled PostgreSQL inside a 0700 folder (a clone under /root): the launcher runs a copy of it, and
    redoes a broken copy an older launcher left behind (its binaries without their libraries)."""
    private = tmp_path / "checkout"
    private.mkdir(mode=0o700)
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None
    assert spec.submodule_search_locations
    bundled = Path(next(iter(spec.submodule_search_locations)))
    site = private / "site-packages"
    shutil.copytree(bundled, site / PACKAGE, symlinks=True)
    shutil.copytree(bundled.parent / f"{PACKAGE}.libs", site / f"{PACKAGE}.libs", symlinks=True)
    for record in bundled.parent.glob(f"{PACKAGE}-*.dist-info"):
        shutil.copytree(record, site / record.name)
    shared_dir = Path(tempfile.mkdtemp(prefix="songda-pg-test-", dir="/var/tmp"))  # reachable by the user
    shared_dir.chmod(0o755)
    broken = shared_dir / f"pg-{_wheel_digest(site / PACKAGE)}" / PACKAGE / INSTALL
    shutil.copytree(bundled / INSTALL / "bin", broken / "bin", symlinks=True)
    try:
        env = {"PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).resolve().parent.parent)])}
        process, printed = launch(
            private / "state", free_port(), extra_env=env | {"SONGDA_PG_SHARED_DIR": str(shared_dir)}
        )
        try:
            assert httpx.get(printed["gateway"] + "/readyz", timeout=10).status_code == 200
            postmaster = Path(_state(private / "state")["postgres_data_dir"]) / "postmaster.pid"
            assert postmaster.is_relative_to(shared_dir)
        finally:
            output = stop(process)
        assert "stopped." in output
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
