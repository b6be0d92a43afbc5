"""The timer trigger carries each armed timer's due time, so that the redemption service's timer worker wakes only for
one due sooner than its next wake-up (shared/timers.py).

Revision ID: redemption_0007_timer_due
Revises: redemption_0006_notify
"""

from shared.migrations import notify_timers_with_due_time, notify_timers_without_due_time

revision = "redemption_0007_timer_due"
down_revision = "redemption_0006_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_timers_with_due_time()


def downgrade() -> None:
    notify_timers_without_due_time()
