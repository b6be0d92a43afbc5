"""finish codes name the assigned own rider

Revision ID: redemption_0003
Revises: redemption_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "redemption_0003"
down_revision: str | None = "redemption_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("code", sa.Column("assigned_rider", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("code", "assigned_rider")
