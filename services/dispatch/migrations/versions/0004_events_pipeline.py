"""Outbox retention, the relay's broker epoch and parked events of the dispatch service.

Revision ID: dispatch_events_0001
Revises: dispatch_0003
"""

from shared.migrations import create_event_pipeline_tables, drop_event_pipeline_tables

revision = "dispatch_events_0001"
down_revision = "dispatch_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_pipeline_tables()


def downgrade() -> None:
    drop_event_pipeline_tables()
