"""`make chaos`: starts its own stack, runs steady load through the gateway while every fault is injected in turn,
lets the system drain, checks the invariants and exits non-zero on any violation.
`python -m deploy.chaos [--orders N] [--seconds S] [--concurrency C] [--aftersales SHARE] [--drain S] [--out DIR]`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from deploy.chaos.drain import close_all, connect_all, drain
from deploy.chaos.faults import Injected, all_faults, inject
from deploy.chaos.invariants import check_all
from deploy.chaos.load import LoadStats, run_load
from deploy.chaos.report import print_report, problems_of, summary, write_json
from deploy.chaos.stack import Bench, bench_stack

WHOLE_RUN_LIMIT = 30 * 60  # seconds: the run stops itself (and its stack) past this


def _give_up(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"make chaos ran past {WHOLE_RUN_LIMIT} s")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the stack's stop, as Ctrl-C does


async def _faults_during_load(bench: Bench, seconds: float, since: float) -> list[Injected]:
    """Each fault in turn, spread evenly over the load's window (each waits for the stack to be whole again)."""
    faults = all_faults(bench.stack.options.services)
    gap = seconds / (len(faults) + 1)
    injected = []
    for number, fault in enumerate(faults, start=1):
        await asyncio.sleep(max(since + number * gap - time.monotonic(), 0))
        print(f"  t+{time.monotonic() - since:5.0f} s  {fault.name} ...", flush=True)
        done = await asyncio.to_thread(inject, fault, bench, since)
        print(f"  t+{time.monotonic() - since:5.0f} s  {fault.name}: {done.error or done.outcome}", flush=True)
        injected.append(done)
    return injected


async def _run(bench: Bench, args: argparse.Namespace) -> int:
    services = bench.stack.options.services
    stats = LoadStats()
    since = time.monotonic()
    case_share = args.aftersales if "aftersales" in services else 0.0
    print(f"load: {args.orders} orders over {args.seconds} s, up to {args.concurrency} at once, after-sales cases on "
          f"{case_share:.0%} of the completed; faults in turn:", flush=True)  # fmt: skip
    faults = asyncio.create_task(_faults_during_load(bench, args.seconds, since))
    await run_load(bench, args.orders, args.seconds, args.concurrency, stats, case_share)
    injected = await faults
    load_seconds = time.monotonic() - since
    print(f"load done in {load_seconds:.0f} s ({stats.placed} orders placed); draining (up to {args.drain} s) ...",
          flush=True)  # fmt: skip
    drained = await drain(bench, services, stats.order_ids, stats.case_ids, args.drain)
    dbs = await connect_all(bench, services)
    try:
        findings = await check_all(dbs)
    finally:
        await close_all(dbs)
    report = summary(stats, load_seconds, injected, drained, findings)
    problems = problems_of(report, args.orders)
    print_report(report, problems)
    write_json(report, args.out / "chaos.json")
    print(f"JSON in {args.out / 'chaos.json'}; the stack's logs were in {args.out / 'state' / 'logs'}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.chaos")
    parser.add_argument("--orders", type=int, default=1000, help="orders to place (fewer placed fails the run)")
    parser.add_argument("--seconds", type=int, default=420, help="the window the orders and faults are spread over")
    parser.add_argument("--concurrency", type=int, default=120, help="orders driven at once")
    parser.add_argument(
        "--aftersales", type=float, default=0.3, metavar="SHARE",
        help="share of the completed orders whose customer then opens an after-sales case (0 to 1; 0.3: 3 in 10): "
        "refunded whole or in part, negotiated, returned, ruled by ops after a rejection, rejected, or withdrawn",
    )  # fmt: skip
    parser.add_argument("--drain", type=int, default=180, help="seconds to wait for the system to settle")
    parser.add_argument("--out", type=Path, default=Path(".songda/chaos"), help="report, logs and the stack's state")
    args = parser.parse_args()
    if args.orders < 1 or args.seconds < 60 or args.concurrency < 1 or not 0 <= args.aftersales <= 1:
        parser.error("--orders >= 1, --seconds >= 60 (the faults need the time), --concurrency >= 1, "
                     "0 <= --aftersales <= 1")  # fmt: skip
    args.out = args.out.resolve()
    signal.signal(signal.SIGALRM, _give_up)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.alarm(WHOLE_RUN_LIMIT)
    with bench_stack(args.out, seconds=0) as bench:
        code = asyncio.run(_run(bench, args))
    signal.alarm(0)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("make chaos: interrupted; its stack is stopped", file=sys.stderr)
        sys.exit(130)
