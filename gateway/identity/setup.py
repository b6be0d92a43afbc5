"""Wires identity into the gateway app: the identity database (engine disposed with the app) and its routes when
GATEWAY_DATABASE_URL is set, the OIDC exchange when GATEWAY_OIDC_ISSUER is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from gateway.identity.oidc import OidcProvider
from gateway.identity.oidc_router import oidc_router
from gateway.identity.passwords import Passwords
from gateway.identity.router import identity_router
from gateway.identity.sessions import SessionPolicy
from gateway.settings import GatewaySettings
from shared.clock import Clock
from shared.db import create_engine, create_sessionmaker


def install_identity(app: FastAPI, settings: GatewaySettings, clock: Clock) -> None:
    app.state.clock = clock
    if settings.oidc_issuer:
        app.state.oidc = OidcProvider(settings)
        app.include_router(oidc_router())
    if not settings.database_url:
        return
    engine = create_engine(settings.database_url, settings.database_pool_size)
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.passwords = Passwords()
    app.state.invitation_ttl = timedelta(seconds=settings.staff_invitation_ttl_seconds)
    app.state.session_policy = SessionPolicy(
        access_ttl_seconds=settings.staff_access_token_ttl_seconds,
        refresh_ttl=timedelta(seconds=settings.staff_refresh_token_ttl_seconds),
        throttle_window=timedelta(seconds=settings.sign_in_window_seconds),
        failures_per_account=settings.sign_in_failures_per_account,
        failures_per_address=settings.sign_in_failures_per_address,
    )

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await engine.dispose()

    app.include_router(identity_router(lifespan))
