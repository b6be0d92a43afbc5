"""Everything chaos takes from the local stack (deploy/local), in one place."""

from __future__ import annotations

from deploy.bench.context import Bench, bench_stack
from deploy.local.demo import CUSTOMER_LAT, CUSTOMER_LNG
from deploy.local.launcher import Stack, database_url
from deploy.local.processes import AppProcess
from deploy.local.sandboxes.wechatpay import NAME as WECHATPAY_SANDBOX
from deploy.local.seed import DEMO_STORE_ID

__all__ = [
    "CUSTOMER_LAT",
    "CUSTOMER_LNG",
    "DEMO_STORE_ID",
    "WECHATPAY_SANDBOX",
    "AppProcess",
    "Bench",
    "Stack",
    "bench_stack",
    "database_url",
]
