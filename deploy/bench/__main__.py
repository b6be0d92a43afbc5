"""`make bench`: starts its own stack and measures the platform's hot paths, each beside its reference run on the
same machine in the same minute. `python -m deploy.bench [--seconds N] [--only gateway,redemption,...]`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.bench.callbacks import measure_callbacks
from deploy.bench.context import Bench, bench_stack
from deploy.bench.gateway import measure_gateway
from deploy.bench.idle import measure_idle
from deploy.bench.lifecycle import measure_lifecycle
from deploy.bench.redemption import measure_redemption
from deploy.bench.relay import measure_relay
from deploy.bench.report import table
from deploy.bench.tools import Missing, ensure_debian_tools

MEASURES: dict[str, Callable[[Bench], dict[str, Any] | list[dict[str, Any]]]] = {
    "idle": measure_idle,  # first: nothing has run yet
    "gateway": measure_gateway,
    "redemption": measure_redemption,
    "callbacks": measure_callbacks,
    "lifecycle": measure_lifecycle,
    "relay": measure_relay,  # last: its 20,000 events reach every consumer of order.events
}
WHOLE_RUN_LIMIT = 20 * 60  # seconds: the bench stops itself (and its stack) past this


def _give_up(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the bench ran past {WHOLE_RUN_LIMIT} s")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the stack's and nginx's stops, as Ctrl-C does


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.bench")
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument("--only", default=",".join(MEASURES), help="comma-separated: " + ", ".join(MEASURES))
    parser.add_argument("--out", default=".songda/bench", help="results.json, logs and the stack's state go here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - MEASURES.keys()
    if unknown:
        parser.error(f"unknown measures {sorted(unknown)}")
    try:
        ensure_debian_tools()
    except Missing as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 2
    workdir = Path(args.out).resolve()
    signal.signal(signal.SIGALRM, _give_up)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.alarm(WHOLE_RUN_LIMIT)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with bench_stack(workdir, args.seconds) as bench:
        for name in chosen:
            print(f"measuring {name} ...", flush=True)
            try:
                outcome = MEASURES[name](bench)
            except TimeoutError:
                raise
            except Exception as exc:
                traceback.print_exc()
                outcome = {"measure": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            results.extend(outcome if isinstance(outcome, list) else [outcome])
    signal.alarm(0)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "seconds_per_run": args.seconds,
              "took_seconds": round(time.monotonic() - started), "results": results}  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    print()
    print(table(results))
    print(f"\n{len(results)} results in {report['took_seconds']} s; JSON in {workdir / 'results.json'}")
    return 1 if any("error" in row for row in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("make bench: interrupted; its stack is stopped", file=sys.stderr)
        sys.exit(130)
