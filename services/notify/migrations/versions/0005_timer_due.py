"""The timer trigger carries each armed timer's due time, so that the notify service's timer worker wakes only for
one due sooner than its next wake-up (shared/timers.py).

Revision ID: notify_0005_timer_due
Revises: notify_0004_notices
"""

from shared.migrations import notify_timers_with_due_time, notify_timers_without_due_time

revision = "notify_0005_timer_due"
down_revision = "notify_0004_notices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_timers_with_due_time()


def downgrade() -> None:
    notify_timers_without_due_time()
