"""Outbox retention, the relay's broker epoch and parked events of the order service.

A branch of its own off the first revision, so the service's own revisions never conflict with it.

Revision ID: order_events_0001
Revises: order_0001
"""

from shared.migrations import create_event_pipeline_tables, drop_event_pipeline_tables

revision = "order_events_0001"
down_revision = "order_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_pipeline_tables()


def downgrade() -> None:
    drop_event_pipeline_tables()
