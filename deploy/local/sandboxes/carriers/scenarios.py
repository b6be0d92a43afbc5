"""What the carrier simulator does with an accepted order: a script of steps in Songda's words, turned into each
carrier's status codes by its `emits` table (a step the carrier has no code for is skipped; a terminal one falls
back to its cancel code). `expected_end` says where a scenario must leave the delivery."""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.dispatch.carriers.base import Wire
from services.dispatch.domain import DeliveryStatus

NORMAL = ["rider_assigned", "rider_at_store", "picked_up", "delivering", "delivered"]
SCRIPTS: dict[str, list[str]] = {
    "normal": NORMAL,
    "slow_accept": NORMAL,
    "duplicate": NORMAL,
    "out_of_order": NORMAL,
    "race": NORMAL,
    "reassign": [
        "rider_assigned",
        "rider_at_store",
        "withdrawn",
        "rider_assigned:2",
        "rider_at_store",
        "picked_up",
        "delivering",
        "delivered",
    ],
    "pickup_failed": ["rider_assigned", "rider_at_store", "pickup_failed"],
    "unreachable_return": ["rider_assigned", "rider_at_store", "picked_up", "delivering", "returning", "returned"],
    "carrier_cancel": ["rider_assigned", "cancelled"],
    "force_majeure": ["rider_assigned", "rider_at_store", "force_majeure"],
    "create_fail": [],
}
CHAOS = [name for name in SCRIPTS if name not in ("slow_accept", "race")]
TERMINAL_STEPS = {"pickup_failed", "returned", "cancelled", "force_majeure", "delivered"}


@dataclass(frozen=True)
class Step:
    name: str
    code: str
    rider: int  # 0: none; 1, 2: which rider


def steps(wire: Wire, scenario: str) -> list[Step]:
    result = []
    for entry in SCRIPTS[scenario]:
        name, _, rider = entry.partition(":")
        code = wire.emits.get(name)
        if code is None and name in TERMINAL_STEPS:
            code = wire.emits["cancelled"]
        if code is None:
            continue
        result.append(Step(name, code, int(rider or 1) if name != "withdrawn" else 0))
    return result


def choose(scenario: str, rng: random.Random) -> str:
    return rng.choice(CHAOS) if scenario == "chaos" else scenario


def expected_end(wire: Wire, scenario: str) -> DeliveryStatus:
    script = steps(wire, scenario)
    if not script:
        return DeliveryStatus.failed
    status, _ = wire.statuses[script[-1].code]
    assert status is not None
    return status
