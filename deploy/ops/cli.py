"""The operator's commands of `songda`: serve one process of the image, create and list topics, a group's lag, probe
a URL, migrate, list, replay and discard dead letters (a service's database), count, read and replay dead-letter
topics (the broker), and publish a service's retained events again.

They need only a service's database or the broker, so they run the same in production (a migration Job, an
operator's shell in a pod) as against the local stack; nothing here imports `deploy.local`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from shared.events.topics import SERVICES

SERVED_APPS = {"gateway": "gateway.app:create_app", **{s: f"services.{s}.app:create_app" for s in SERVICES}}

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.events.kafka_security import KafkaSecurity

T = TypeVar("T")


def _kafka_security() -> KafkaSecurity:
    """The broker commands' SASL and TLS, from `SONGDA_KAFKA_*` variables (shared/events/kafka_security.py)."""
    from shared.events.kafka_security import KafkaSecurity

    return KafkaSecurity.from_environ("SONGDA_")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serves the app in this process (the container's PID 1, so it gets SIGTERM itself) until SIGTERM."""
    app = SERVED_APPS.get(args.process, args.process)
    if ":" not in app:
        print(f"songda serve: {args.process!r} is neither {', '.join(SERVED_APPS)} nor module:factory", file=sys.stderr)
        return 2
    from shared.serving import serve

    serve(app, host=args.host, port=args.port, graceful_seconds=args.graceful_seconds)
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from shared.events.provision import create_missing_topics

    created = asyncio.run(
        create_missing_topics(
            args.bootstrap_servers, args.partitions, args.replication_factor, security=_kafka_security()
        )
    )
    print(f"created {len(created)} topic(s): {', '.join(created) or 'none missing'}")
    return 0


def cmd_topics_list(args: argparse.Namespace) -> int:
    from shared.events.inspect import topic_offsets

    print(f"{'topic':<32} {'partition':>9} {'low':>10} {'high':>10} {'records':>10}")
    for row in asyncio.run(topic_offsets(args.bootstrap_servers, security=_kafka_security())):
        print(f"{row.topic:<32} {row.partition:>9} {row.low:>10} {row.high:>10} {row.high - row.low:>10}")
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    from shared.events.inspect import group_lag

    rows = asyncio.run(group_lag(args.bootstrap_servers, args.group, security=_kafka_security()))
    if not rows:
        print(f"group {args.group!r} has committed no offsets")
        return 0
    print(f"{'topic':<32} {'partition':>9} {'committed':>10} {'high':>10} {'lag':>10}")
    for row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        print(f"{row.topic:<32} {row.partition:>9} {committed:>10} {row.high:>10} {row.lag:>10}")
    print(f"total lag: {sum(row.lag for row in rows)}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """GETs a URL and succeeds on 200: the chart's `helm test` pods run it (the image has no curl)."""
    import httpx

    try:
        response = httpx.get(args.url, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"{args.url}: {exc!r}", file=sys.stderr)
        return 1
    print(f"{args.url}: {response.status_code} {response.text[:500]}")
    return 0 if response.status_code == 200 else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared import migrations

    services = migrations.HISTORIES if args.service == "all" else (args.service,)
    for service in services:
        url = args.database_url.replace("{service}", service)
        migrations.upgrade(service, url)
        print(f"{service}: migrated")
    return 0


def cmd_dlq_replay_topic(args: argparse.Namespace) -> int:
    from shared.events.dlq import replay_dlq

    report = asyncio.run(replay_dlq(args.bootstrap_servers, args.topic, security=_kafka_security()))
    print(f"{args.topic}: replayed {report.replayed}, skipped {report.skipped}")
    return 0


def cmd_dlq_count(args: argparse.Namespace) -> int:
    from shared.events.dead_letters import dead_letter_counts

    counts = asyncio.run(dead_letter_counts(args.bootstrap_servers, args.topics or None, security=_kafka_security()))
    print(f"{'topic':<32} {'held':>8} {'not replayed':>13}")
    for row in counts:
        print(f"{row.topic:<32} {row.held:>8} {row.not_replayed:>13}")
    print(f"total: {sum(r.held for r in counts)} held, {sum(r.not_replayed for r in counts)} not replayed")
    return 0


def cmd_dlq_read(args: argparse.Namespace) -> int:
    from shared.events.dead_letters import read_dead_letters

    records = asyncio.run(
        read_dead_letters(args.bootstrap_servers, args.topic, limit=args.limit, security=_kafka_security())
    )
    for record in records:
        h = record.headers
        print(
            f"{record.partition}:{record.offset}\tkey {record.key}\t{h.get('type', '?')}"
            f"\tevent {h.get('event_id', '?')}\tfrom {record.origin}"
            f"\tconsumer {h.get('songda-consumer', '?')}\t{record.error}"
        )
        if args.values:
            print(f"  {record.value.decode(errors='replace')}")
    print(f"{len(records)} record(s) read from {args.topic}")
    return 0


def cmd_events_republish(args: argparse.Namespace) -> int:
    import uuid

    from shared.events.republish import republish

    if not (args.subject or args.event_id or args.from_id is not None or args.to_id is not None):
        print("name --subject, --event-id or an outbox id range (--from-id/--to-id)", file=sys.stderr)
        return 2
    event_id = uuid.UUID(args.event_id) if args.event_id else None
    count = _in_session(
        args.database_url,
        lambda session: republish(
            session, subject=args.subject, event_id=event_id, from_id=args.from_id, to_id=args.to_id
        ),
    )
    print(f"{count} event(s) back in the outbox backlog; the service's relay publishes them again, oldest first")
    return 0


def _in_session(database_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Runs `work` in one committed transaction on a service's database."""
    from shared.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_staff_invite(args: argparse.Namespace) -> int:
    """An account straight in the gateway's database, with no one signed in yet: the first ops account (or a
    merchant's first admin) of a production without dev tokens."""
    from datetime import UTC, datetime, timedelta

    from pydantic import TypeAdapter, ValidationError

    from gateway.identity.accounts import check_shape, create_account, issue_invitation
    from gateway.identity.schemas import Login
    from shared.errors import ServiceError

    try:
        login = TypeAdapter(Login).validate_python(args.login)  # as the API takes it: trimmed, lower case
    except ValidationError as exc:
        print(f"songda staff invite: --login {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2

    async def work(session: AsyncSession) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        check_shape(args.role, args.merchant_id, args.admin, [])
        account = await create_account(
            session, login=login, display_name=args.display_name or login, role=args.role,
            merchant_id=args.merchant_id, admin=args.admin, store_ids=[], created_by="songda staff invite", now=now,
        )  # fmt: skip
        return issue_invitation(session, account, "invite", now, timedelta(hours=args.valid_hours))

    try:
        token, expires_at = _in_session(args.database_url, work)
    except ServiceError as exc:
        print(f"songda staff invite: {exc.detail}", file=sys.stderr)
        return 1
    print(f"invited {login} ({args.role}); until {expires_at:%Y-%m-%d %H:%M} UTC the token below sets its password")
    print('once, with POST /v1/auth/password {"token": ..., "password": ...}:')
    print(token)
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from shared.events.parking import dead_letters

    letters = _in_session(args.database_url, lambda session: dead_letters(session, args.consumer))
    for letter in letters:
        print(
            f"{letter.subject}\t{letter.type}\tevent {letter.event_id}\tconsumer {letter.consumer}\t"
            f"since {letter.parked_at:%Y-%m-%d %H:%M:%S}\t{letter.waiting} waiting behind\t{letter.error}"
        )
    print(f"{len(letters)} dead letter(s) held")
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from shared.events.parking import replay

    if not args.subjects and not args.all:
        print("name the subjects to replay, or --all", file=sys.stderr)
        return 2
    subjects = None if args.all else args.subjects
    released = _in_session(args.database_url, lambda session: replay(session, subjects, args.consumer))
    print(f"released {released} dead letter(s); the consumer applies them and what waits behind them, in order")
    return 0


def cmd_dlq_discard(args: argparse.Namespace) -> int:
    from shared.events.parking import discard

    dropped = _in_session(args.database_url, lambda session: discard(session, args.subjects, args.consumer))
    print(f"discarded {dropped} dead letter(s); the events parked behind them are applied next")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run one process of the platform in the foreground (the image's command)")
    serve.add_argument(
        "process", help=f"{', '.join(SERVED_APPS)}, or an app factory as module:function (a sandbox, say)"
    )
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--graceful-seconds", type=int, default=20, help="time in-flight requests get on SIGTERM")
    serve.set_defaults(func=cmd_serve)

    topics = sub.add_parser("topics", help="the platform's Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    create = topics_sub.add_parser("create", help="create every topic the cluster lacks (safe to repeat)")
    create.add_argument("--bootstrap-servers", required=True)
    create.add_argument("--partitions", type=int, default=4, help="per events topic: the most consumers that work")
    create.add_argument("--replication-factor", type=int, default=3)
    create.set_defaults(func=cmd_topics_create)
    listing = topics_sub.add_parser("list", help="every topic's partitions with their first and next offsets")
    listing.add_argument("--bootstrap-servers", required=True)
    listing.set_defaults(func=cmd_topics_list)

    lag = sub.add_parser("lag", help="a consumer group's committed offsets and lag per partition")
    lag.add_argument("--group", required=True, help="a service's consumer group: its name (order, dispatch, ...)")
    lag.add_argument("--bootstrap-servers", required=True)
    lag.set_defaults(func=cmd_lag)

    probe = sub.add_parser("probe", help="GET a URL; exit 0 on 200 (health checks without curl)")
    probe.add_argument("url")
    probe.add_argument("--timeout", type=float, default=10.0)
    probe.set_defaults(func=cmd_probe)

    migrate = sub.add_parser("migrate", help="run a service's (or the gateway's) Alembic migrations to head")
    migrate.add_argument("service", choices=[*SERVICES, "gateway", "all"])
    migrate.add_argument(
        "--database-url",
        required=True,
        help="postgresql+asyncpg URL; '{service}' is replaced by the service name",
    )
    migrate.set_defaults(func=cmd_migrate)

    staff = sub.add_parser("staff", help="staff accounts in the gateway's identity database")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    invite = staff_sub.add_parser("invite", help="create an account and print its one-time password token")
    invite.add_argument("--database-url", required=True, help="the gateway's postgresql+asyncpg URL")
    invite.add_argument("--login", required=True)
    invite.add_argument("--role", choices=["ops", "merchant", "rider"], default="ops")
    invite.add_argument("--merchant-id", help="for a merchant's staff or rider")
    invite.add_argument("--admin", action="store_true", help="the merchant's admin (with --role merchant)")
    invite.add_argument("--display-name")
    invite.add_argument("--valid-hours", type=int, default=72)
    invite.set_defaults(func=cmd_staff_invite)

    dlq = sub.add_parser("dlq", help="dead letters: events a consumer's handler failed on, holding their subject")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", required=True, help="the consuming service's postgresql+asyncpg URL")
    database.add_argument("--consumer", help="only this consumer group (default: every one in that database)")
    listing = dlq_sub.add_parser("list", parents=[database], help="the held dead letters and what waits behind")
    listing.set_defaults(func=cmd_dlq_list)
    replay = dlq_sub.add_parser(
        "replay", parents=[database], help="apply the dead letters of these subjects again, then their parked events"
    )
    replay.add_argument("subjects", nargs="*", help="subjects (order ids) as `list` shows them")
    replay.add_argument("--all", action="store_true", help="every held dead letter")
    replay.set_defaults(func=cmd_dlq_replay)
    discard = dlq_sub.add_parser(
        "discard", parents=[database], help="drop the dead letters of these subjects; apply their parked events"
    )
    discard.add_argument("subjects", nargs="+")
    discard.set_defaults(func=cmd_dlq_discard)
    replay_topic = dlq_sub.add_parser(
        "replay-topic", help="send every record of a .dlq topic back to its original topic (undecodable ones too)"
    )
    replay_topic.add_argument("topic", help="e.g. order.events.dlq")
    replay_topic.add_argument("--bootstrap-servers", required=True)
    replay_topic.set_defaults(func=cmd_dlq_replay_topic)
    count = dlq_sub.add_parser("count", help="records held per .dlq topic, and how many were not replayed yet")
    count.add_argument("topics", nargs="*", help="the .dlq topics (default: every one of the platform)")
    count.add_argument("--bootstrap-servers", required=True)
    count.set_defaults(func=cmd_dlq_count)
    read = dlq_sub.add_parser("read", help="print a .dlq topic's records: event, origin, consumer and error")
    read.add_argument("topic", help="e.g. order.events.dlq")
    read.add_argument("--bootstrap-servers", required=True)
    read.add_argument("--limit", type=int, default=100, help="at most this many records, oldest first")
    read.add_argument("--values", action="store_true", help="print each record's envelope too")
    read.set_defaults(func=cmd_dlq_read)

    events = sub.add_parser("events", help="a service's published events (its outbox)")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    again = events_sub.add_parser(
        "republish", help="publish retained outbox events again (an order's, one by id, or an id range)"
    )
    again.add_argument("--database-url", required=True, help="the publishing service's postgresql+asyncpg URL")
    again.add_argument("--subject", help="every retained event of this subject (an order id)")
    again.add_argument("--event-id", help="the event with this id")
    again.add_argument("--from-id", type=int, help="outbox rows from this id (inclusive)")
    again.add_argument("--to-id", type=int, help="outbox rows up to this id (inclusive)")
    again.set_defaults(func=cmd_events_republish)
