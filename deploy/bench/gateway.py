"""Gateway throughput: wrk on an authenticated GET that dispatch answers from memory, direct, through the gateway and
through nginx in front of the same upstream."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from deploy.bench.context import Bench, per_operation
from deploy.bench.tools import Nginx, wrk

PATH = "/v1/carriers"
CONNECTIONS = 32


def measure_gateway(bench: Bench) -> dict[str, Any]:
    headers = bench.auth("merchant")
    dispatch = bench.url("dispatch")
    direct = wrk(dispatch + PATH, headers, CONNECTIONS, bench.seconds)
    usage: dict[str, float] = {}
    with bench.cpu(usage):
        songda = wrk(bench.url("gateway") + PATH, headers, CONNECTIONS, bench.seconds)
    reference_usage: dict[str, float] = {}
    with Nginx(bench.workdir / "nginx", bench.stack.app("dispatch").port) as nginx, bench.cpu(reference_usage):
        before = nginx.cpu_seconds()
        proxied = wrk(f"http://127.0.0.1:{nginx.port}{PATH}", headers, CONNECTIONS, bench.seconds)
        reference_usage["nginx"] = nginx.cpu_seconds() - before
    return {
        "measure": f"gateway GET {PATH}, {CONNECTIONS} connections",
        "songda": asdict(songda) | {"p50_added": songda.p50 - direct.p50, "p99_added": songda.p99 - direct.p99},
        "reference": asdict(proxied) | {"what": "nginx as the proxy (keepalive upstream)"},
        "direct": asdict(direct),
        "ratio": songda.rate / proxied.rate if proxied.rate else 0.0,
        "cpu_ms_per_op": per_operation(usage, songda.requests),
        "reference_cpu_ms_per_op": per_operation(reference_usage, proxied.requests),
    }
