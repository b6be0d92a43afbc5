"""After-sales cases, their lines, history, evidence and compensations; the order view; merchants' overrides.

Revision ID: aftersales_0004_cases
Revises: aftersales_0003_notify
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "aftersales_0004_cases"
down_revision: str | None = "aftersales_0003_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aftersales_policy",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("overrides", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "store_id", name=op.f("pk_aftersales_policy")),
    )
    op.create_table(
        "order_view",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("fulfilment_mode", sa.Text(), nullable=False),
        sa.Column("items_fen", sa.Integer(), nullable=False),
        sa.Column("delivery_fee_fen", sa.Integer(), nullable=False),
        sa.Column("total_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("picked_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("carrier", sa.Text(), nullable=True),
        sa.Column("proofs", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_order_view")),
    )
    op.create_index(op.f("ix_order_view_customer_id"), "order_view", ["customer_id"], unique=False)
    op.create_table(
        "aftersales_case",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("reason_code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("asked_fen", sa.Integer(), nullable=False),
        sa.Column("agreed_fen", sa.Integer(), nullable=True),
        sa.Column("refunded_fen", sa.Integer(), nullable=True),
        sa.Column("refund_attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("proposal", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reject_reason_code", sa.Text(), nullable=True),
        sa.Column("return_shipment", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reship_shipment", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("ruling", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("delivery_proofs", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("perishable", sa.Boolean(), nullable=False),
        sa.Column("deadline", sa.Text(), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order_view.order_id"], name=op.f("fk_aftersales_case_order_id_order_view")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_case")),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_aftersales_case_idempotency"),
    )
    op.create_index(op.f("ix_aftersales_case_customer_id"), "aftersales_case", ["customer_id"], unique=False)
    op.create_index(op.f("ix_aftersales_case_merchant_id"), "aftersales_case", ["merchant_id"], unique=False)
    op.create_index(op.f("ix_aftersales_case_order_id"), "aftersales_case", ["order_id"], unique=False)
    op.create_index(op.f("ix_aftersales_case_state"), "aftersales_case", ["state"], unique=False)
    op.create_index(
        "uq_aftersales_case_non_delivery",
        "aftersales_case",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("type = 'non_delivery'"),
    )
    op.create_table(
        "order_view_line",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("sku_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order_view.order_id"], name=op.f("fk_order_view_line_order_id_order_view")
        ),
        sa.PrimaryKeyConstraint("order_id", "sku_id", name=op.f("pk_order_view_line")),
    )
    op.create_table(
        "aftersales_case_change",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_case.id"], name=op.f("fk_aftersales_case_change_case_id_aftersales_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_case_change")),
    )
    op.create_index(op.f("ix_aftersales_case_change_case_id"), "aftersales_case_change", ["case_id"], unique=False)
    op.create_table(
        "aftersales_case_line",
        sa.Column("case_id", sa.Text(), nullable=False),
        sa.Column("sku_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_case.id"], name=op.f("fk_aftersales_case_line_case_id_aftersales_case")
        ),
        sa.PrimaryKeyConstraint("case_id", "sku_id", name=op.f("pk_aftersales_case_line")),
    )
    op.create_index(op.f("ix_aftersales_case_line_order_id"), "aftersales_case_line", ["order_id"], unique=False)
    op.create_index(
        "uq_aftersales_case_line_open",
        "aftersales_case_line",
        ["order_id", "sku_id"],
        unique=True,
        postgresql_where=sa.text("open"),
    )
    op.create_table(
        "aftersales_compensation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("basis_fen", sa.Integer(), nullable=False),
        sa.Column("rate_percent", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("settled_fen", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_case.id"], name=op.f("fk_aftersales_compensation_case_id_aftersales_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_compensation")),
        sa.UniqueConstraint("case_id", "kind", name="uq_aftersales_compensation_case_kind"),
    )
    op.create_index(op.f("ix_aftersales_compensation_case_id"), "aftersales_compensation", ["case_id"], unique=False)
    op.create_index(op.f("ix_aftersales_compensation_order_id"), "aftersales_compensation", ["order_id"], unique=False)
    op.create_table(
        "aftersales_evidence",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("case_id", sa.Text(), nullable=True),
        sa.Column("uploaded_by", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_case.id"], name=op.f("fk_aftersales_evidence_case_id_aftersales_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_evidence")),
        sa.UniqueConstraint("uploaded_by", "idempotency_key", name="uq_aftersales_evidence_idempotency"),
    )
    op.create_index(op.f("ix_aftersales_evidence_case_id"), "aftersales_evidence", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_aftersales_evidence_case_id"), table_name="aftersales_evidence")
    op.drop_table("aftersales_evidence")
    op.drop_index(op.f("ix_aftersales_compensation_order_id"), table_name="aftersales_compensation")
    op.drop_index(op.f("ix_aftersales_compensation_case_id"), table_name="aftersales_compensation")
    op.drop_table("aftersales_compensation")
    op.drop_index("uq_aftersales_case_line_open", table_name="aftersales_case_line", postgresql_where=sa.text("open"))
    op.drop_index(op.f("ix_aftersales_case_line_order_id"), table_name="aftersales_case_line")
    op.drop_table("aftersales_case_line")
    op.drop_index(op.f("ix_aftersales_case_change_case_id"), table_name="aftersales_case_change")
    op.drop_table("aftersales_case_change")
    op.drop_table("order_view_line")
    op.drop_index(
        "uq_aftersales_case_non_delivery",
        table_name="aftersales_case",
        postgresql_where=sa.text("type = 'non_delivery'"),
    )
    op.drop_index(op.f("ix_aftersales_case_state"), table_name="aftersales_case")
    op.drop_index(op.f("ix_aftersales_case_order_id"), table_name="aftersales_case")
    op.drop_index(op.f("ix_aftersales_case_merchant_id"), table_name="aftersales_case")
    op.drop_index(op.f("ix_aftersales_case_customer_id"), table_name="aftersales_case")
    op.drop_table("aftersales_case")
    op.drop_index(op.f("ix_order_view_customer_id"), table_name="order_view")
    op.drop_table("order_view")
    op.drop_table("aftersales_policy")
