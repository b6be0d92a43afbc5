"""Kept callbacks are their own work queue, taken in arrival order (`seq`): a pending one wakes the apply worker
(NOTIFY in the inserting transaction, delivered once it commits) instead of arming a timer each, and the repeating
prune timer is armed once, here, instead of on every callback.

Revision ID: dispatch_0006_callback_queue
Revises: dispatch_0005_notify
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0006_callback_queue"
down_revision = "dispatch_0005_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("carrier_callback", sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False))
    op.create_index(
        "ix_carrier_callback_pending",
        "carrier_callback",
        ["delivery_id", "seq"],
        postgresql_where=sa.text("outcome = 'pending'"),
    )
    op.execute(
        "CREATE FUNCTION songda_notify_callback() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_notify('songda_callback', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER carrier_callback_notify AFTER INSERT ON carrier_callback FOR EACH ROW"
        " WHEN (NEW.outcome = 'pending') EXECUTE FUNCTION songda_notify_callback()"
    )
    # Callbacks kept before this revision were each waiting on a `callback.apply` timer: the worker takes them from
    # the table now.
    op.execute(
        "UPDATE timer SET cancelled_at = now() WHERE kind = 'callback.apply' AND fired_at IS NULL"
        " AND cancelled_at IS NULL AND position('#' in key) = 0"
    )
    op.execute(
        "INSERT INTO timer (kind, key, due_at) VALUES ('callback.prune', 'callbacks', now())"
        " ON CONFLICT ON CONSTRAINT uq_timer_kind_key DO NOTHING"
    )


def downgrade() -> None:
    op.drop_index("ix_carrier_callback_pending", "carrier_callback")
    op.drop_column("carrier_callback", "seq")
    op.execute("DROP TRIGGER carrier_callback_notify ON carrier_callback")
    op.execute("DROP FUNCTION songda_notify_callback()")
