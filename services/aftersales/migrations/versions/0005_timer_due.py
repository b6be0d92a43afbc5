"""The timer trigger carries each armed timer's due time, so that the aftersales service's timer worker wakes only for
one due sooner than its next wake-up (shared/timers.py).

Revision ID: aftersales_0005_timer_due
Revises: aftersales_0004_cases
"""

from shared.migrations import notify_timers_with_due_time, notify_timers_without_due_time

revision = "aftersales_0005_timer_due"
down_revision = "aftersales_0004_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_timers_with_due_time()


def downgrade() -> None:
    notify_timers_without_due_time()
