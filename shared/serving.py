"""Serving one of the platform's apps with uvicorn, as every process runs (the launcher's children, `songda serve` in
the image): uvloop and httptools, no Server header, the apps' own client-address rules (uvicorn's proxy-header
rewriting off), a graceful-shutdown bound.

uvicorn's server wakes every 0.1 s to refresh its Date header and look for an exit request: two thirds of an idle
service's wake-ups, and most of its idle CPU. `PatientServer` wakes once a second instead, which is as often as the
Date header changes; a SIGTERM or Ctrl-C is seen within that second.

Once the app has started, what the start built (modules, the app, SQLAlchemy's mappers, pydantic's validators: some
150,000 objects) is frozen out of the garbage collector's reach (`gc.freeze`): each full collection had walked them
all, about 100 ms of a service's CPU each time, a fifth of the order service's CPU through an outbox backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys

import uvicorn

TICK_SECONDS = 1.0
# uvicorn refreshes the Date header on ticks whose counter is a multiple of 10 (its once a second at 0.1 s).
_DATE_TICKS = 10


class PatientServer(uvicorn.Server):
    async def main_loop(self) -> None:
        gc.collect()
        gc.freeze()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _DATE_TICKS) % 864000
            await asyncio.sleep(TICK_SECONDS)
            should_exit = await self.on_tick(counter)


def serve(app: str, *, host: str, port: int, graceful_seconds: int) -> None:
    """Serves `app` ("module:factory", imported from the working directory as uvicorn's CLI does) until SIGTERM or
    SIGINT."""
    sys.path.insert(0, "")
    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=graceful_seconds,
    )
    PatientServer(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--graceful-seconds", type=int, default=10)
    args = parser.parse_args(argv)
    serve(args.app, host=args.host, port=args.port, graceful_seconds=args.graceful_seconds)


if __name__ == "__main__":
    main()
