"""The timer trigger carries each armed timer's due time, so that the order service's timer worker wakes only for
one due sooner than its next wake-up (shared/timers.py).

Revision ID: order_0006_timer_due
Revises: order_0005_notify
"""

from shared.migrations import notify_timers_with_due_time, notify_timers_without_due_time

revision = "order_0006_timer_due"
down_revision = "order_0005_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_timers_with_due_time()


def downgrade() -> None:
    notify_timers_without_due_time()
