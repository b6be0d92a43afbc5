"""stores, catalogue, orders, payments, refunds, reviews

Revision ID: order_0002
Revises: order_0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "order_0002"
down_revision: str | None = "order_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_notification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.Text(), nullable=True),
        sa.Column("event_type", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_notification")),
    )
    op.create_table(
        "store",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lng", sa.Float(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("opening_hours", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("range_radius_m", sa.Integer(), nullable=True),
        sa.Column("range_polygon", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("range_reach_m", sa.Integer(), nullable=False),
        sa.Column("min_order_fen", sa.Integer(), nullable=False),
        sa.Column("delivery_base_fen", sa.Integer(), nullable=False),
        sa.Column("delivery_tiers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("free_delivery_above_fen", sa.Integer(), nullable=True),
        sa.Column("prep_minutes", sa.Integer(), nullable=False),
        sa.Column("fulfilment_modes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("dispatch_trigger", sa.Text(), nullable=False),
        sa.Column("dispatch_strategy", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("auto_accept", sa.Boolean(), nullable=False),
        sa.Column("accept_limit_minutes", sa.Integer(), nullable=False),
        sa.Column("rating_sum", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rating_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store")),
    )
    op.create_index("ix_store_lat_lng", "store", ["lat", "lng"], unique=False)
    op.create_index(op.f("ix_store_merchant_id"), "store", ["merchant_id"], unique=False)
    op.create_table(
        "customer_order",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("fulfilment_mode", sa.Text(), nullable=False),
        sa.Column("address", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("contact", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("distance_m", sa.Integer(), nullable=True),
        sa.Column("items_fen", sa.Integer(), nullable=False),
        sa.Column("delivery_fee_fen", sa.Integer(), nullable=False),
        sa.Column("total_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("express_carrier", sa.Text(), nullable=True),
        sa.Column("express_tracking_no", sa.Text(), nullable=True),
        sa.Column("delivery", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("open_aftersales", sa.Integer(), server_default="0", nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["store.id"], name=op.f("fk_customer_order_store_id_store")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_order")),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_customer_order_idempotency"),
    )
    op.create_index("ix_customer_order_customer_placed", "customer_order", ["customer_id", "placed_at"], unique=False)
    op.create_index("ix_customer_order_merchant_placed", "customer_order", ["merchant_id", "placed_at"], unique=False)
    op.create_index(op.f("ix_customer_order_store_id"), "customer_order", ["store_id"], unique=False)
    op.create_table(
        "product",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("on_shelf", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("delisted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["store.id"], name=op.f("fk_product_store_id_store")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
    )
    op.create_index(op.f("ix_product_store_id"), "product", ["store_id"], unique=False)
    op.create_table(
        "aftersales_hold",
        sa.Column("case_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["customer_order.id"], name=op.f("fk_aftersales_hold_order_id_customer_order")
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_aftersales_hold")),
    )
    op.create_index(op.f("ix_aftersales_hold_order_id"), "aftersales_hold", ["order_id"], unique=False)
    op.create_table(
        "order_line",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("sku_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("sku_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["customer_order.id"], name=op.f("fk_order_line_order_id_customer_order")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_line")),
    )
    op.create_index(op.f("ix_order_line_order_id"), "order_line", ["order_id"], unique=False)
    op.create_table(
        "order_status_change",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["customer_order.id"], name=op.f("fk_order_status_change_order_id_customer_order")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_status_change")),
    )
    op.create_index(op.f("ix_order_status_change_order_id"), "order_status_change", ["order_id"], unique=False)
    op.create_table(
        "payment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("out_trade_no", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("payer_openid", sa.Text(), nullable=False),
        sa.Column("prepay_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["customer_order.id"], name=op.f("fk_payment_order_id_customer_order")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
        sa.UniqueConstraint("order_id", name=op.f("uq_payment_order_id")),
        sa.UniqueConstraint("out_trade_no", name=op.f("uq_payment_out_trade_no")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_payment_transaction_id")),
    )
    op.create_table(
        "refund",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("out_refund_no", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["customer_order.id"], name=op.f("fk_refund_order_id_customer_order")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund")),
        sa.UniqueConstraint("order_id", "cause", name="uq_refund_order_cause"),
        sa.UniqueConstraint("out_refund_no", name=op.f("uq_refund_out_refund_no")),
    )
    op.create_index(op.f("ix_refund_order_id"), "refund", ["order_id"], unique=False)
    op.create_table(
        "review",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("store_rating", sa.Integer(), nullable=False),
        sa.Column("rider_rating", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "rider_rating IS NULL OR rider_rating BETWEEN 1 AND 5", name=op.f("ck_review_rider_rating_range")
        ),
        sa.CheckConstraint("store_rating BETWEEN 1 AND 5", name=op.f("ck_review_store_rating_range")),
        sa.ForeignKeyConstraint(["order_id"], ["customer_order.id"], name=op.f("fk_review_order_id_customer_order")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_review")),
    )
    op.create_index(op.f("ix_review_store_id"), "review", ["store_id"], unique=False)
    op.create_table(
        "sku",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("on_shelf", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_sku_price_not_negative")),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_sku_stock_not_negative")),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], name=op.f("fk_sku_product_id_product")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sku")),
    )
    op.create_index(op.f("ix_sku_product_id"), "sku", ["product_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sku_product_id"), table_name="sku")
    op.drop_table("sku")
    op.drop_index(op.f("ix_review_store_id"), table_name="review")
    op.drop_table("review")
    op.drop_index(op.f("ix_refund_order_id"), table_name="refund")
    op.drop_table("refund")
    op.drop_table("payment")
    op.drop_index(op.f("ix_order_status_change_order_id"), table_name="order_status_change")
    op.drop_table("order_status_change")
    op.drop_index(op.f("ix_order_line_order_id"), table_name="order_line")
    op.drop_table("order_line")
    op.drop_index(op.f("ix_aftersales_hold_order_id"), table_name="aftersales_hold")
    op.drop_table("aftersales_hold")
    op.drop_index(op.f("ix_product_store_id"), table_name="product")
    op.drop_table("product")
    op.drop_index(op.f("ix_customer_order_store_id"), table_name="customer_order")
    op.drop_index("ix_customer_order_merchant_placed", table_name="customer_order")
    op.drop_index("ix_customer_order_customer_placed", table_name="customer_order")
    op.drop_table("customer_order")
    op.drop_index(op.f("ix_store_merchant_id"), table_name="store")
    op.drop_index("ix_store_lat_lng", table_name="store")
    op.drop_table("store")
    op.drop_table("payment_notification")
