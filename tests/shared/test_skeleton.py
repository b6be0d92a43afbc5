"""The service skeleton every service starts from (`shared.service.build_service_app`, the request session, the
test harness): a refusal keeps what it wrote, an error keeps nothing, and the service's HTTP clients close with it.
Aftersales and notify are served as they are, through the same harness their tests will use."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter

from services.aftersales.app import create_app as create_aftersales
from services.aftersales.settings import AftersalesSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from shared.clock import FrozenClock
from shared.db import DbSession
from shared.errors import Conflict, Refused
from shared.keys import public_pem
from shared.service import build_service_app
from shared.timers import arm_timer
from shared.vault import new_key
from tests.harness import ServiceHarness, served
from tests.support import JWT_KEY


def _test_env(db_url: str, bootstrap: str) -> dict[str, Any]:
    return {
        "database_url": db_url,
        "kafka_bootstrap_servers": bootstrap,
        "jwt_public_keys": public_pem(JWT_KEY),  # type: ignore[arg-type]
        "run_workers": False,
    }


def _router(clock: FrozenClock) -> APIRouter:
    router = APIRouter()

    @router.post("/refuse/{key}")
    async def refuse(key: str, session: DbSession) -> None:
        await arm_timer(session, kind="audit", key=key, due_at=clock.now())
        raise Refused(Conflict("Refused, but remembered", key=key))

    @router.post("/fail/{key}")
    async def fail(key: str, session: DbSession) -> None:
        await arm_timer(session, kind="audit", key=key, due_at=clock.now())
        raise Conflict("Failed, nothing kept")

    return router


async def test_a_refusal_commits_what_it_wrote_and_an_error_rolls_back(db_url: str, bootstrap: str) -> None:
    clock = FrozenClock()
    settings = AftersalesSettings(**_test_env(db_url, bootstrap))
    app = build_service_app(settings, title="t", description="t", routers=[_router(clock)], clock=clock)
    async with served(app, ServiceHarness) as service:
        refused = await service.client.post("/refuse/r-1")
        failed = await service.client.post("/fail/f-1")
        assert refused.status_code == failed.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert (refused.json()["detail"], refused.json()["key"]) == ("Refused, but remembered", "r-1")
        assert await service.sql("SELECT key FROM timer WHERE kind = 'audit'") == [("r-1",)]


async def test_the_services_http_clients_close_with_it(db_url: str, bootstrap: str) -> None:
    provider = httpx.AsyncClient()
    settings = NotifySettings(**_test_env(db_url, bootstrap))
    app = build_service_app(settings, title="t", description="t", clock=FrozenClock(), http_clients=[provider])
    async with served(app, ServiceHarness):
        assert not provider.is_closed
    assert provider.is_closed


async def test_aftersales_and_notify_start_as_the_skeleton(db_url: str, bootstrap: str) -> None:
    for create_app, settings in (
        (
            create_aftersales,
            AftersalesSettings(**_test_env(db_url, bootstrap)),
        ),
        (create_notify, NotifySettings(**_test_env(db_url, bootstrap), vault_key=new_key())),
    ):
        async with served(create_app(settings, clock=FrozenClock()), ServiceHarness) as service:  # type: ignore[arg-type]
            assert (await service.client.get("/healthz")).json() == {"status": "ok", "service": settings.service_name}
            assert await service.timers.fire_due() == 0
