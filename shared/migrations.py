"""Alembic plumbing shared by every service's own migration history (`services/<name>/migrations`, and the gateway's
`gateway/migrations`).

`upgrade(service, url)` runs a service's history programmatically (the launcher, tests, `songda migrate`);
`run_env(metadata)` is what each history's env.py calls; `create_infra_tables()` is the first revision of every
history: the outbox, inbox and timer tables.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.database_tls import split_tls
from shared.events.topics import SERVICES

# Every component with a database of its own, so a migration history: the services, and the gateway (identity).
HISTORIES: tuple[str, ...] = (*SERVICES, "gateway")


def alembic_config(service: str, database_url: str) -> Config:
    """`service` is a service's name, or `gateway` for the gateway's own history (its identity tables)."""
    package = "gateway" if service == "gateway" else f"services.{service}"
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.attributes["database_url"] = database_url
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Blocking; call it from a thread in async code."""
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(target_metadata: Any) -> None:
    config = context.config
    url: str = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url") or ""
    if not url:
        raise RuntimeError("no database URL: pass one to shared.migrations.upgrade or set sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: sa.Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        plain_url, connect_args = split_tls(url)
        engine = create_async_engine(plain_url, poolclass=NullPool, connect_args=connect_args)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


def create_infra_tables() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", postgresql.UUID, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("envelope", postgresql.JSONB, nullable=False),
        sa.Column("created_at", tz, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", tz),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        # Named as the models' naming convention names it, so autogenerate sees no drift.
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", postgresql.UUID, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("handled_at", tz, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "timer",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("due_at", tz, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", tz, nullable=False, server_default=sa.func.now()),
        sa.Column("fired_at", tz),
        sa.Column("cancelled_at", tz),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("kind", "key", name="uq_timer_kind_key"),
    )
    op.create_index(
        "ix_timer_due",
        "timer",
        ["due_at"],
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )


def create_event_pipeline_tables() -> None:
    """The second infra revision of every history, on a branch of its own off the first (so a service's own
    revisions never conflict with it): published-outbox retention, the relay's broker epoch, parked events."""
    tz = sa.DateTime(timezone=True)
    op.create_index(
        "ix_outbox_published_at", "outbox", ["published_at"], postgresql_where=sa.text("published_at IS NOT NULL")
    )
    op.create_table(
        "outbox_relay",
        sa.Column("relay", sa.Text, primary_key=True),
        sa.Column("broker_epoch", sa.Text, nullable=False),
        sa.Column("updated_at", tz, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "parked_event",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("event_id", postgresql.UUID, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("held", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("error", sa.Text),
        sa.Column("parked_at", tz, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("consumer", "event_id", name="uq_parked_event_consumer"),
    )
    op.create_index("ix_parked_event_subject", "parked_event", ["consumer", "subject", "id"])


def drop_event_pipeline_tables() -> None:
    op.drop_table("parked_event")
    op.drop_table("outbox_relay")
    op.drop_index("ix_outbox_published_at", "outbox")


def drop_infra_tables() -> None:
    for table in ("timer", "inbox", "outbox"):
        op.drop_table(table)


def create_notify_triggers() -> None:
    """NOTIFY in the writing transaction (delivered once it commits) when outbox rows are inserted or timers armed
    or moved: the relay and the timer worker sleep until then (shared/db.py `notifications`)."""
    op.execute(
        "CREATE FUNCTION songda_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_notify('songda_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION songda_notify_outbox()"
    )
    _notify_timers_per_statement()


def _notify_timers_per_statement() -> None:
    """The timer trigger as it was until the timers' `*_timer_due` migrations: one NOTIFY without a payload per
    statement that arms or moves timers."""
    op.execute(
        "CREATE OR REPLACE FUNCTION songda_notify_timer() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_notify('songda_timer', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER timer_notify AFTER INSERT OR UPDATE OF due_at ON timer"
        " FOR EACH STATEMENT EXECUTE FUNCTION songda_notify_timer()"
    )


def notify_timers_with_due_time() -> None:
    """The timer trigger notifies once per armed or moved row, with its due time (epoch seconds) as the payload, and
    not for timers fired or cancelled: the timer worker (shared/timers.py) wakes only for a timer due sooner than it
    would wake anyway, where every statement touching `timer` had woken it for a round."""
    op.execute(
        "CREATE OR REPLACE FUNCTION songda_notify_timer() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_notify('songda_timer', extract(epoch FROM NEW.due_at)::text); RETURN NULL; END $$"
    )
    op.execute("DROP TRIGGER timer_notify ON timer")
    op.execute(
        "CREATE TRIGGER timer_notify AFTER INSERT OR UPDATE OF due_at ON timer FOR EACH ROW"
        " WHEN (NEW.fired_at IS NULL AND NEW.cancelled_at IS NULL) EXECUTE FUNCTION songda_notify_timer()"
    )


def notify_timers_without_due_time() -> None:
    op.execute("DROP TRIGGER timer_notify ON timer")
    _notify_timers_per_statement()


def create_claim_function() -> None:
    """`songda_claim_event`: the consumer's subject lock and its claim of the event (shared/events/consumer.py) in one
    call, so one round trip. A volatile function's every statement takes a snapshot of its own (READ COMMITTED, the
    consumers' isolation), so the claim, after the lock, sees what the subject's previous holder committed. It claims
    the event (its inbox row, unless events of its subject are parked, which it must then wait behind; nothing if it
    was handled) and tells what was there before the claim: whether it had been handled, whether its subject has
    parked events, and its own parked row if it is one of them."""
    op.execute(
        """
CREATE FUNCTION songda_claim_event(
    p_consumer text, p_lock_key bigint, p_subject text, p_event_id uuid, p_type text, p_topic text,
    p_partition int, p_offset bigint,
    OUT claimed boolean, OUT handled boolean, OUT parked boolean, OUT mine bigint, OUT mine_held boolean
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock_key);
    WITH waiting AS (
        SELECT w.id, w.event_id, w.held FROM parked_event w WHERE w.consumer = p_consumer AND w.subject = p_subject
    ), taken AS (
        INSERT INTO inbox (consumer, event_id, type, topic, "partition", "offset")
        SELECT p_consumer, p_event_id, p_type, p_topic, p_partition, p_offset WHERE NOT EXISTS (SELECT FROM waiting)
        ON CONFLICT DO NOTHING
        RETURNING inbox.event_id
    )
    SELECT
        EXISTS (SELECT FROM taken),
        EXISTS (SELECT FROM inbox i WHERE i.consumer = p_consumer AND i.event_id = p_event_id),
        EXISTS (SELECT FROM waiting),
        (SELECT w.id FROM waiting w WHERE w.event_id = p_event_id),
        (SELECT w.held FROM waiting w WHERE w.event_id = p_event_id)
    INTO claimed, handled, parked, mine, mine_held;
END $$"""
    )


def drop_claim_function() -> None:
    op.execute("DROP FUNCTION songda_claim_event(text, bigint, text, uuid, text, text, int, bigint)")


def drop_notify_triggers() -> None:
    op.execute("DROP TRIGGER timer_notify ON timer")
    op.execute("DROP FUNCTION songda_notify_timer()")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION songda_notify_outbox()")
