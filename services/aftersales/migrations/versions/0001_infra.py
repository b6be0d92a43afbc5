"""The outbox, inbox and timer tables of the aftersales service.

Revision ID: aftersales_0001
Revises:
"""

from shared.migrations import create_infra_tables, drop_infra_tables

revision = "aftersales_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infra_tables()


def downgrade() -> None:
    drop_infra_tables()
