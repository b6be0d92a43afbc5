"""The timer trigger carries each armed timer's due time, so that the dispatch service's timer worker wakes only for
one due sooner than its next wake-up (shared/timers.py).

Revision ID: dispatch_0007_timer_due
Revises: dispatch_0006_callback_queue
"""

from shared.migrations import notify_timers_with_due_time, notify_timers_without_due_time

revision = "dispatch_0007_timer_due"
down_revision = "dispatch_0006_callback_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_timers_with_due_time()


def downgrade() -> None:
    notify_timers_without_due_time()
