"""NOTIFY triggers of the redemption service: new outbox rows wake its relay, armed timers its timer worker.

Revision ID: redemption_0005_notify
Revises: redemption_events_0001
"""

from shared.migrations import create_notify_triggers, drop_notify_triggers

revision = "redemption_0005_notify"
down_revision = "redemption_events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_notify_triggers()


def downgrade() -> None:
    drop_notify_triggers()
