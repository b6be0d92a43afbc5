"""Everything chaos takes from the local stack, in one place: the stack modules are moving, and only this file
names them."""

from __future__ import annotations

from deploy.bench.context import Bench, bench_stack
from shared.stack.demo import CUSTOMER_LAT, CUSTOMER_LNG, DEMO_STORE_ID
from shared.stack.launcher import DEMO_STORE, WECHATPAY_SANDBOX, Stack, database_url
from shared.stack.processes import AppProcess

__all__ = [
    "CUSTOMER_LAT",
    "CUSTOMER_LNG",
    "DEMO_STORE",
    "DEMO_STORE_ID",
    "WECHATPAY_SANDBOX",
    "AppProcess",
    "Bench",
    "Stack",
    "bench_stack",
    "database_url",
]
