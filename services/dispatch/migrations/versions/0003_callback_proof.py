"""callbacks: refused ones kept as digest and prefix, the offer they were verified for, push nonces, safe-mode keys

Revision ID: dispatch_0003
Revises: dispatch_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dispatch_0003"
down_revision: str | None = "dispatch_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("carrier_account", sa.Column("aes_key_sealed", sa.LargeBinary(), nullable=True))
    op.add_column("carrier_callback", sa.Column("offer_id", sa.UUID(), nullable=True))
    op.add_column("carrier_callback", sa.Column("body_sha256", sa.Text(), nullable=False, server_default=""))
    op.add_column("carrier_callback", sa.Column("body_size", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE carrier_callback SET body_sha256 = encode(sha256(body), 'hex'), body_size = length(body)")
    op.alter_column("carrier_callback", "body_sha256", server_default=None)
    op.alter_column("carrier_callback", "body_size", server_default=None)
    op.create_table(
        "callback_nonce",
        sa.Column("carrier", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("carrier", "nonce", name=op.f("pk_callback_nonce")),
    )
    op.create_index(op.f("ix_callback_nonce_seen_at"), "callback_nonce", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_nonce_seen_at"), table_name="callback_nonce")
    op.drop_table("callback_nonce")
    op.drop_column("carrier_callback", "body_size")
    op.drop_column("carrier_callback", "body_sha256")
    op.drop_column("carrier_callback", "offer_id")
    op.drop_column("carrier_account", "aes_key_sealed")
