"""NOTIFY triggers of the redemption service: new outbox rows wake its relay, armed timers its timer worker.

Revision ID: redemption_0006_notify
Revises: redemption_0005
"""

from shared.migrations import create_notify_triggers, drop_notify_triggers

revision = "redemption_0006_notify"
down_revision = "redemption_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_notify_triggers()


def downgrade() -> None:
    drop_notify_triggers()
