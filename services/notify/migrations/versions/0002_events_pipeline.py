"""Outbox retention, the relay's broker epoch and parked events of the notify service.

Revision ID: notify_events_0001
Revises: notify_0001
"""

from shared.migrations import create_event_pipeline_tables, drop_event_pipeline_tables

revision = "notify_events_0001"
down_revision = "notify_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_pipeline_tables()


def downgrade() -> None:
    drop_event_pipeline_tables()
