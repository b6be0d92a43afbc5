"""Conversions at the carrier edge: money inside Songda is integer fen, carriers speak yuan floats; positions inside
are GCJ-02 (what WeChat and the mini-program use), Baidu-based carriers speak BD-09."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

_X_PI = math.pi * 3000.0 / 180.0


def yuan_to_fen(yuan: float | str | int) -> int:
    """Through the decimal string, so 12.3 becomes 1230 and not 1229."""
    return int((Decimal(str(yuan)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fen_to_yuan(fen: int) -> float:
    return float(Decimal(fen) / 100)


def gcj02_to_bd09(lat: float, lng: float) -> tuple[float, float]:
    z = math.sqrt(lng * lng + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lng) + 0.000003 * math.cos(lng * _X_PI)
    return z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065


def bd09_to_gcj02(lat: float, lng: float) -> tuple[float, float]:
    x, y = lng - 0.0065, lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    return z * math.sin(theta), z * math.cos(theta)
