"""What the run did and what it found, printed for a person and written as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deploy.chaos.faults import Injected
from deploy.chaos.invariants import Finding
from deploy.chaos.load import LoadStats


def summary(
    stats: LoadStats, seconds: float, injected: list[Injected], drained: dict[str, Any], findings: list[Finding]
) -> dict[str, Any]:
    return {
        "load": {
            "seconds": round(seconds, 1),
            "orders_placed": stats.placed,
            "orders_paid": stats.paid,
            "orders_final": dict(stats.final),
            "orders_given_up_by_the_load": len(stats.gave_up),
            "requests": stats.requests,
            "errors": dict(stats.errors.most_common()),
            "redemptions_accepted": stats.redeemed,
            "redemptions_refused": stats.refused_redemptions,
            "vouchers_over_redeemed_seen_by_clients": stats.over_redeemed,
            "aftersales_cases_wanted": stats.cases_wanted,
            "aftersales_cases_opened": stats.cases_opened,
            "aftersales_cases_final": dict(stats.cases_final),
            "aftersales_cases_given_up_by_the_load": len(stats.cases_given_up),
        },
        "faults": [asdict(fault) for fault in injected],
        "drain": drained,
        "invariants": [asdict(finding) | {"ok": finding.ok} for finding in findings],
    }


def print_report(report: dict[str, Any], problems: list[str]) -> None:
    load = report["load"]
    print("\n== load")
    print(f"  {load['orders_placed']} orders placed, {load['orders_paid']} paid, final: {load['orders_final']}, "
          f"{load['orders_given_up_by_the_load']} given up by the load; {load['requests']} requests in "
          f"{load['seconds']:.0f} s")  # fmt: skip
    print(f"  redemptions: {load['redemptions_accepted']} accepted, {load['redemptions_refused']} refused")
    closed = load["aftersales_cases_final"]
    print(f"  after-sales cases: {load['aftersales_cases_opened']} opened (of {load['aftersales_cases_wanted']} "
          f"wanted), {closed.get('refunded', 0)} refunded, {closed.get('closed_rejected', 0)} rejected, "
          f"{closed.get('closed_cancelled', 0)} withdrawn, {load['aftersales_cases_given_up_by_the_load']} given up "
          "by the load")  # fmt: skip
    errors = load["errors"]
    print(f"  errors seen by the clients (expected while a process is down): {sum(errors.values())}")
    for kind, count in errors.items():
        print(f"    {count:6d}  {kind}")
    print("\n== faults")
    for fault in report["faults"]:
        state = f"FAILED: {fault['error']}" if fault["error"] else fault["outcome"]
        print(f"  t+{fault['at']:6.1f} s  {fault['name']:<24} ({fault['took']:.1f} s)  {state}")
    drained = report["drain"]
    print(f"\n== drain: {'settled' if drained['settled'] else 'NOT settled'} after {drained['seconds']} s "
          f"{drained['left'] if not drained['settled'] else ''}")  # fmt: skip
    print("\n== invariants")
    for finding in report["invariants"]:
        mark = "ok  " if finding["ok"] else "FAIL"
        line = f"  {mark} {finding['invariant']:<36} checked {finding['checked']}"
        if not finding["ok"]:
            line += f", {finding['violations']} violation(s): {finding['detail']}; e.g. {finding['samples']}"
        print(line)
    print()
    if problems:
        print("make chaos: FAILED")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("make chaos: every fault injected, every invariant holds")


def problems_of(report: dict[str, Any], orders_wanted: int) -> list[str]:
    problems = []
    if report["load"]["orders_placed"] < orders_wanted:
        problems.append(f"only {report['load']['orders_placed']} of {orders_wanted} orders were placed")
    problems += [f"fault '{f['name']}' failed: {f['error']}" for f in report["faults"] if f["error"]]
    if report["load"]["aftersales_cases_opened"] < report["load"]["aftersales_cases_wanted"]:
        problems.append(f"only {report['load']['aftersales_cases_opened']} of "
                        f"{report['load']['aftersales_cases_wanted']} after-sales cases were opened")  # fmt: skip
    if report["load"]["vouchers_over_redeemed_seen_by_clients"]:
        problems.append("clients saw a voucher redeemed more often than its uses")
    problems += [f"invariant violated: {f['invariant']}" for f in report["invariants"] if not f["ok"]]
    return problems


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
