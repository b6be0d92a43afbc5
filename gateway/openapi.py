"""One OpenAPI document for the whole platform: the gateway's own routes plus every upstream's, merged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

INTERNAL_PATHS = {"/healthz", "/readyz", "/metrics"}


class OpenApiAggregator:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, upstreams: dict[str, str], ttl: float = 30) -> None:
        self.app = app
        self.client = client
        self.upstreams = upstreams
        self.ttl = ttl
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    async def document(self) -> dict[str, Any]:
        if self._cached is None or time.monotonic() - self._cached_at > self.ttl:
            self._cached = await self._build()
            self._cached_at = time.monotonic()
        return self._cached

    async def _fetch(self, service: str, base: str) -> tuple[str, dict[str, Any] | None]:
        try:
            response = await self.client.get(f"{base}/openapi.json", timeout=3.0)
            response.raise_for_status()
            return service, response.json()
        except (httpx.HTTPError, ValueError):
            return service, None

    async def _build(self) -> dict[str, Any]:
        doc = get_openapi(
            title="Songda API",
            version=self.app.version,
            description=(
                "Every route of the platform, through the gateway. Send `Authorization: Bearer <token>` except on "
                "login, health and the carrier and payment callbacks, which are verified by signature."
            ),
            routes=self.app.routes,
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        doc["security"] = [{"bearer": []}]
        unavailable = []
        for service, upstream in await asyncio.gather(*(self._fetch(s, u) for s, u in self.upstreams.items())):
            if upstream is None:
                unavailable.append(service)
                continue
            for path, item in upstream.get("paths", {}).items():
                if path in INTERNAL_PATHS:
                    continue
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.setdefault("tags", [service])
                doc["paths"][path] = item
            for name, schema in upstream.get("components", {}).get("schemas", {}).items():
                schemas.setdefault(name, schema)
        if unavailable:
            doc["info"]["x-unavailable-services"] = unavailable
        return doc
