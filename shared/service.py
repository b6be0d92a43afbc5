"""Builds a service's FastAPI app: engine, producer, outbox relay, consumer, timer worker, health and metrics.

Each service's `app.py` calls `build_service_app` with its settings, routers and handlers. Background workers run
under a supervisor that restarts them with backoff, so a broker or database outage degrades the service (readyz
says so) instead of killing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from functools import partial

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select, text

from shared import metrics
from shared.auth import TokenVerifier
from shared.clock import Clock, SystemClock
from shared.db import create_engine, create_sessionmaker
from shared.errors import install_error_handlers, problem_response
from shared.events.consumer import EventConsumer, EventHandler
from shared.events.epoch import BrokerEpoch
from shared.events.kafka import make_producer, start_producer
from shared.events.models import OutboxEvent
from shared.events.parking import parked_count
from shared.events.relay import OutboxRelay
from shared.input_guard import InputGuardMiddleware
from shared.middleware import RequestContextMiddleware, networks
from shared.settings import ServiceSettings
from shared.timers import TimerHandler, TimerWorker, timer_backlog
from shared.tracing import configure_tracing, trace_app, trace_client

log = logging.getLogger(__name__)


async def supervise(
    name: str, work: Callable[[], Awaitable[None]], max_backoff: float = 30.0, until: asyncio.Event | None = None
) -> None:
    """Runs `work` until cancelled (or, when it returns, once `until` is set), restarting it with backoff when it
    fails."""
    delay = 0.5
    while until is None or not until.is_set():
        try:
            await work()
            delay = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("worker failed; restarting", extra={"worker": name, "error": repr(exc), "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)


def build_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    event_handlers: Mapping[str, EventHandler] | None = None,
    timer_handlers: Mapping[str, TimerHandler] | None = None,
    clock: Clock | None = None,
    http_clients: Sequence[httpx.AsyncClient] = (),
    workers: Mapping[str, Callable[[FastAPI], Awaitable[None]]] | None = None,
    closing: Sequence[Callable[[], Awaitable[None]]] = (),
) -> FastAPI:
    """`http_clients` are the service's own pools (to a provider, a peer service): built with the app, so its
    routes and handlers can hold them, and closed on shutdown, after the workers stopped and before the engine is
    disposed. `workers` are the service's own background loops (given the app, once its engine is up), supervised
    like the relay; `closing` runs on shutdown beside the clients (what holds a database connection of its own)."""
    service = settings.service_name
    configure_tracing(service)
    clock = clock or SystemClock()
    event_handlers = event_handlers or {}
    timer_handlers = timer_handlers or {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, settings.database_pool_size)
        sessionmaker = create_sessionmaker(engine)
        producer = make_producer(settings)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.producer = producer
        app.state.producer_ready = False
        tasks: list[asyncio.Task[None]] = []
        # Set on shutdown: the consumer finishes its record in hand and commits (shutdown_grace_seconds at most).
        stopping = asyncio.Event()
        consuming: list[asyncio.Task[None]] = []

        async def start_and_run_workers() -> None:
            await start_producer(producer, max_backoff=settings.outbox_max_backoff_seconds)
            app.state.producer_ready = True
            relay = OutboxRelay(
                service=service,
                engine=engine,
                sessionmaker=sessionmaker,
                producer=producer,
                broker_epoch=BrokerEpoch(
                    settings.kafka_bootstrap_servers,
                    producer,
                    security=settings.kafka_security(),
                    consumer_timeout_ms=settings.kafka_consumer_timeout_ms,
                ),
                batch_size=settings.outbox_batch_size,
                poll_seconds=settings.outbox_poll_seconds,
                max_backoff_seconds=settings.outbox_max_backoff_seconds,
                retention=timedelta(hours=settings.outbox_retention_hours),
            )
            app.state.relay = relay
            workers: list[Awaitable[None]] = [supervise("outbox-relay", relay.run)]
            if settings.consumes:

                async def consume() -> None:
                    consumer = EventConsumer(
                        service=service,
                        sessionmaker=sessionmaker,
                        bootstrap_servers=settings.kafka_bootstrap_servers,
                        topics=settings.consumes,
                        handlers=event_handlers,
                        dlq_producer=producer,
                        max_attempts=settings.consumer_max_attempts,
                        retry_seconds=settings.consumer_retry_seconds,
                        max_backoff_seconds=settings.consumer_max_backoff_seconds,
                        session_timeout_ms=settings.kafka_session_timeout_ms,
                        consumer_timeout_ms=settings.kafka_consumer_timeout_ms,
                        released_check_seconds=settings.consumer_released_check_seconds,
                        offset_commit_seconds=settings.consumer_offset_commit_seconds,
                        security=settings.kafka_security(),
                        stopping=stopping,
                    )
                    await consumer.run()

                consuming.append(asyncio.create_task(supervise("consumer", consume, until=stopping)))
            await asyncio.gather(*workers, *consuming)

        if settings.run_workers:
            tasks.append(asyncio.create_task(start_and_run_workers(), name=f"{service}-workers"))
            timers = TimerWorker(
                service=service,
                sessionmaker=sessionmaker,
                clock=clock,
                handlers=timer_handlers,
                batch_size=settings.timer_batch_size,
                poll_seconds=settings.timer_poll_seconds,
                max_backoff_seconds=settings.timer_max_backoff_seconds,
                engine=engine,
            )
            tasks.append(asyncio.create_task(supervise("timers", timers.run), name=f"{service}-timers"))
            for name, work in (workers or {}).items():
                tasks.append(asyncio.create_task(supervise(name, partial(work, app)), name=f"{service}-{name}"))
        try:
            yield
        finally:
            stopping.set()
            if consuming:
                await asyncio.wait(consuming, timeout=settings.shutdown_grace_seconds)
            for task in [*tasks, *consuming]:
                task.cancel()
            for task in [*tasks, *consuming]:
                with suppress(asyncio.CancelledError):
                    await task
            for close in (*closing, *(client.aclose for client in http_clients)):
                with suppress(Exception):  # one failing close must not keep the others (or the engine) open
                    await close()
            with suppress(Exception):
                await producer.stop()
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks off, as in the gateway: a service's server spans are shared.tracing's
        # (trace_app) when tracing is on, and these would add a second span per request; off, they still looked the
        # global providers up on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.clock = clock
    # What the workers run, kept for whoever drives them by hand (tests fire timers and deliver events themselves).
    app.state.event_handlers = event_handlers
    app.state.timer_handlers = timer_handlers
    app.state.token_verifier = TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        public_keys_pem=settings.jwt_public_keys,
        jwks_url=settings.jwt_jwks_url,
    )
    install_error_handlers(app)
    trace_app(app)
    for client in http_clients:
        trace_client(client)
    app.add_middleware(InputGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=service, trusted_proxies=networks(settings.trusted_gateways))
    for router in routers:
        app.include_router(router)
    app.include_router(_operations_router(service))
    return app


def _operations_router(service: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: the database and the broker answer")
    async def readyz(request: Request) -> Response:
        checks = {"database": "ok", "broker": "ok"}
        try:
            async with request.app.state.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 2)
        except Exception as exc:
            checks["database"] = f"failed: {type(exc).__name__}"
        producer = request.app.state.producer
        if not request.app.state.producer_ready:
            checks["broker"] = "not connected"
        else:
            try:
                if not await asyncio.wait_for(producer.client.force_metadata_update(), 2):
                    checks["broker"] = "metadata refresh failed"
            except Exception as exc:
                checks["broker"] = f"failed: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "service": service, "checks": checks})
        return problem_response(
            request,
            status=503,
            code="not-ready",
            title="Service not ready",
            detail=", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            extra={"service": service, "checks": checks},
        )

    @router.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        clock: Clock = request.app.state.clock
        try:
            async with request.app.state.sessionmaker() as session:
                backlog, oldest = (
                    await session.execute(
                        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))
                    )
                ).one()
                metrics.OUTBOX_BACKLOG.labels(service).set(backlog)
                metrics.OUTBOX_OLDEST_AGE.labels(service).set(_age(oldest, clock.now()))
                metrics.TIMER_BACKLOG.labels(service).set(await timer_backlog(session, clock.now()))
                metrics.PARKED_EVENTS.labels(service).set(await parked_count(session))
        except Exception as exc:
            log.warning("metrics: database gauges unavailable", extra={"error": repr(exc)})
        return metrics.exposition()

    return router


def _age(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
