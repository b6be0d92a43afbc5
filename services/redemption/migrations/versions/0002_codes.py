"""codes, ledger, requests, audit, lockouts

Revision ID: redemption_0002
Revises: redemption_0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "redemption_0002"
down_revision: str | None = "redemption_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attempt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=True),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("code_id", sa.UUID(), nullable=True),
        sa.Column("presented", sa.Text(), nullable=False),
        sa.Column("request_no", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt")),
    )
    op.create_index("ix_attempt_failures", "attempt", ["result", "at"], unique=False)
    op.create_index(op.f("ix_attempt_merchant_id"), "attempt", ["merchant_id"], unique=False)
    op.create_index("ix_attempt_store_at", "attempt", ["store_id", "at"], unique=False)
    op.create_table(
        "code",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("uses_total", sa.Integer(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("cycles", sa.Integer(), server_default="0", nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaces", sa.UUID(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name=op.f("ck_code_uses_in_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code")),
        sa.UniqueConstraint("code", name=op.f("uq_code_code")),
    )
    op.create_index(op.f("ix_code_customer_id"), "code", ["customer_id"], unique=False)
    op.create_index(op.f("ix_code_order_id"), "code", ["order_id"], unique=False)
    op.create_index(op.f("ix_code_store_id"), "code", ["store_id"], unique=False)
    op.create_index(
        "uq_code_order_kind_live",
        "code",
        ["order_id", "kind"],
        unique=True,
        postgresql_where="order_id IS NOT NULL AND status IN ('active', 'frozen')",
    )
    op.create_table(
        "lockout",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unlocked_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_lockout")),
    )
    op.create_table(
        "redemption_request",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("request_no", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("answer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_request")),
        sa.UniqueConstraint("scope", "request_no", name="uq_redemption_request_scope_request_no"),
    )
    op.create_table(
        "redemption",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("code_id", sa.UUID(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("request_no", sa.Text(), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_by", sa.Text(), nullable=True),
        sa.Column("reversal_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["code_id"], ["code.id"], name=op.f("fk_redemption_code_id_code")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption")),
    )
    op.create_index(op.f("ix_redemption_code_id"), "redemption", ["code_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_redemption_code_id"), table_name="redemption")
    op.drop_table("redemption")
    op.drop_table("redemption_request")
    op.drop_table("lockout")
    op.drop_index(
        "uq_code_order_kind_live",
        table_name="code",
        postgresql_where="order_id IS NOT NULL AND status IN ('active', 'frozen')",
    )
    op.drop_index(op.f("ix_code_store_id"), table_name="code")
    op.drop_index(op.f("ix_code_order_id"), table_name="code")
    op.drop_index(op.f("ix_code_customer_id"), table_name="code")
    op.drop_table("code")
    op.drop_index("ix_attempt_store_at", table_name="attempt")
    op.drop_index(op.f("ix_attempt_merchant_id"), table_name="attempt")
    op.drop_index("ix_attempt_failures", table_name="attempt")
    op.drop_table("attempt")
