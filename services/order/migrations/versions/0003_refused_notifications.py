"""payment notifications: digest and size, so a refused one keeps only a bounded prefix

Revision ID: order_0003
Revises: order_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "order_0003"
down_revision: str | None = "order_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payment_notification", sa.Column("body_sha256", sa.Text(), nullable=False, server_default=""))
    op.add_column("payment_notification", sa.Column("body_size", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE payment_notification SET body_sha256 = encode(sha256(convert_to(body, 'UTF8')), 'hex'), "
        "body_size = octet_length(body)"
    )
    op.alter_column("payment_notification", "body_sha256", server_default=None)
    op.alter_column("payment_notification", "body_size", server_default=None)


def downgrade() -> None:
    op.drop_column("payment_notification", "body_size")
    op.drop_column("payment_notification", "body_sha256")
