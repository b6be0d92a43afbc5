"""NOTIFY triggers of the aftersales service: new outbox rows wake its relay, armed timers its timer worker.

Revision ID: aftersales_0003_notify
Revises: aftersales_events_0001
"""

from shared.migrations import create_notify_triggers, drop_notify_triggers

revision = "aftersales_0003_notify"
down_revision = "aftersales_events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_notify_triggers()


def downgrade() -> None:
    drop_notify_triggers()
