"""What every process's server does beside serving: its start-up objects are frozen out of the collector's reach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A served app, watched from inside: the collector's frozen objects before it serves and once it does.
_SERVED = """
import asyncio, gc
import uvicorn
from shared.serving import PatientServer

async def app(scope, receive, send):
    pass

server = PatientServer(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error"))

async def watch():
    before = gc.get_freeze_count()
    while not server.started:
        await asyncio.sleep(0.01)
    print(before, gc.get_freeze_count(), flush=True)
    server.should_exit = True

async def main():
    await asyncio.gather(server.serve(), watch())

asyncio.run(main())
"""


def test_a_serving_process_freezes_what_its_start_built() -> None:
    run = subprocess.run([sys.executable, "-c", _SERVED], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    before, after = map(int, run.stdout.split())
    assert before == 0
    assert after > 10_000  # the modules, uvicorn, the app: a full collection no longer walks them
