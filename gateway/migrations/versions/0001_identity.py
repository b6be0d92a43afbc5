"""The gateway's identity tables: staff accounts, invitations, refresh tokens, sign-in throttles.

Revision ID: gateway_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_account",
        sa.Column("id", postgresql.UUID(), nullable=False),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=True),
        sa.Column("admin", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("store_ids", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("disabled_at", TZ, nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_account"),
        sa.UniqueConstraint("login", name="uq_staff_account_login"),
    )
    op.create_index("ix_staff_account_merchant_id", "staff_account", ["merchant_id"])
    op.create_table(
        "invitation",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("account_id", postgresql.UUID(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["staff_account.id"], name="fk_invitation_account_id_staff_account"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_invitation"),
    )
    op.create_index("ix_invitation_account_id", "invitation", ["account_id"])
    op.create_table(
        "refresh_token",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("family_id", postgresql.UUID(), nullable=False),
        sa.Column("account_id", postgresql.UUID(), nullable=False),
        sa.Column("issued_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("rotated_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["staff_account.id"], name="fk_refresh_token_account_id_staff_account"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_token"),
    )
    op.create_index("ix_refresh_token_family_id", "refresh_token", ["family_id"])
    op.create_index("ix_refresh_token_account_id", "refresh_token", ["account_id"])
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_sign_in_throttle"),
    )


def downgrade() -> None:
    op.drop_table("sign_in_throttle")
    op.drop_table("refresh_token")
    op.drop_table("invitation")
    op.drop_table("staff_account")
