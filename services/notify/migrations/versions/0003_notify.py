"""NOTIFY triggers of the notify service: new outbox rows wake its relay, armed timers its timer worker.

Revision ID: notify_0003_notify
Revises: notify_events_0001
"""

from shared.migrations import create_notify_triggers, drop_notify_triggers

revision = "notify_0003_notify"
down_revision = "notify_events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_notify_triggers()


def downgrade() -> None:
    drop_notify_triggers()
