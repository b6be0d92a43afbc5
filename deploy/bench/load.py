"""A closed-loop async HTTP load: `concurrency` workers each sending the next request as soon as one is answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class LoadResult:
    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


async def closed_loop(
    base_url: str,
    make_request: Callable[[int, int], dict[str, Any]],
    concurrency: int,
    seconds: float,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code < 400,
) -> LoadResult:
    """Each worker sends `make_request(worker, n)` (`httpx.AsyncClient.request` keyword arguments) for `seconds`."""
    result = LoadResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        deadline = time.perf_counter() + seconds

        async def worker(number: int) -> None:
            sent = 0
            while time.perf_counter() < deadline:
                request = make_request(number, sent)
                sent += 1
                started = time.perf_counter()
                try:
                    response = await client.request(**request)
                except httpx.HTTPError:
                    result.errors += 1
                    result.statuses[0] = result.statuses.get(0, 0) + 1
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
                if ok(response):
                    result.done += 1
                else:
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result
