"""Outbox retention, the relay's broker epoch and parked events of the aftersales service.

Revision ID: aftersales_events_0001
Revises: aftersales_0001
"""

from shared.migrations import create_event_pipeline_tables, drop_event_pipeline_tables

revision = "aftersales_events_0001"
down_revision = "aftersales_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_pipeline_tables()


def downgrade() -> None:
    drop_event_pipeline_tables()
