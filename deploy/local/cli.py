"""The local stack's commands of `songda`: `run` (the whole platform on this machine) and `demo` (a walk through it)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGINT both stop the stack. SIGINT's handler is set outright: a launcher started in the background
    by a non-interactive shell (`songda run &` in a script, a test runner started so) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt for it, so Ctrl-C and `kill -INT` did nothing."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_run(args: argparse.Namespace) -> int:
    from deploy.local.keys import demo_admin_password
    from deploy.local.launcher import Stack, StackOptions
    from deploy.local.seed import DEMO_ADMIN_LOGIN, DEMO_MERCHANT_ID, DEMO_STORE_ID

    _stop_on_sigterm()
    options = StackOptions.from_env(Path(args.state_dir).resolve())
    if args.gateway_port:
        options.gateway_port = args.gateway_port
    stack = Stack(options)
    started = time.monotonic()
    try:
        print("starting Songda: PostgreSQL, broker, services, gateway ...", flush=True)
        stack.start()
        assert stack.infra is not None
        gateway = stack.gateway.url
        print(f"gateway: {gateway}")
        print(f"console: {gateway}/console/ (sign in as the demo admin below)")
        print(f"docs: {gateway}/docs")
        print(f"ready: {gateway}/readyz")
        print(f"postgres: {stack.infra.postgres_url}")
        print(f"kafka: {stack.infra.bootstrap_servers}")
        print(f"logs: {options.state_dir / 'logs'}")
        print(f"started in {time.monotonic() - started:.1f}s")
        for title, app in stack.sandboxes():
            print(f"{title}: {app.url}")
        print(
            f"demo merchant: merchant_id={DEMO_MERCHANT_ID} store_ids=[{DEMO_STORE_ID}] "
            "(store seeded, its Dada and SF accounts bound; try `make demo`)"
        )
        print(
            f"demo admin: login={DEMO_ADMIN_LOGIN} password={demo_admin_password(options.state_dir)} "
            f"(POST {gateway}/v1/auth/sign-in)"
        )
        for role, token in stack.demo_tokens().items():
            print(f"token {role}: {token}")
        print("Ctrl-C stops everything.", flush=True)
        while True:
            time.sleep(0.5)
            dead = stack.dead_apps()
            if dead:
                for app in dead:
                    print(f"{app.name} exited unexpectedly:\n{app.log_tail()}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        print("stopped.", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from deploy.local.demo import DemoFailed, run_demo

    try:
        run_demo(Path(args.state_dir).resolve())
    except DemoFailed as exc:
        print(f"demo stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="start the whole platform locally; Ctrl-C stops it")
    run.add_argument("--state-dir", default=".songda", help="data, logs and keys (default: .songda)")
    run.add_argument("--gateway-port", type=int, default=0, help="default: $SONGDA_GATEWAY_PORT or 8000")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="walk through the running stack (start it with `songda run` first)")
    demo.add_argument("--state-dir", default=".songda", help="the running stack's state dir (default: .songda)")
    demo.set_defaults(func=cmd_demo)
