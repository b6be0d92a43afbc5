"""How a store's dispatch strategy ranks the carriers that quoted: cheapest, fastest, preferred order, own fleet
first, or broadcast (the first `broadcast_count` of the preferred or cheapest ranking, all at once). Pure."""

from __future__ import annotations

from typing import Any

from services.dispatch.carriers import OWN_FLEET


def rank(candidates: list[dict[str, Any]], strategy: dict[str, Any]) -> list[dict[str, Any]]:
    """Candidates are `{carrier, account_id, fee_fen, eta_seconds, distance_m, token}` as quoted."""
    kind = strategy.get("kind", "cheapest")
    preferred: list[str] = list(strategy.get("carriers") or [])

    def cheapest(c: dict[str, Any]) -> tuple[int, int]:
        return c.get("fee_fen", 0), c.get("eta_seconds", 0)

    def fastest(c: dict[str, Any]) -> tuple[int, int]:
        return c.get("eta_seconds", 0), c.get("fee_fen", 0)

    def by_preference(c: dict[str, Any]) -> tuple[int, int, int]:
        index = preferred.index(c["carrier"]) if c["carrier"] in preferred else len(preferred)
        return index, *cheapest(c)

    if kind == "fastest":
        return sorted(candidates, key=fastest)
    if kind == "own_fleet_first":
        return sorted(candidates, key=lambda c: (c["carrier"] != OWN_FLEET, *cheapest(c)))
    if kind in ("preferred", "broadcast") and preferred:
        return sorted(candidates, key=by_preference)
    return sorted(candidates, key=cheapest)


def wave_size(strategy: dict[str, Any]) -> int:
    """How many carriers are offered the delivery at once."""
    return int(strategy.get("broadcast_count", 2)) if strategy.get("kind") == "broadcast" else 1
