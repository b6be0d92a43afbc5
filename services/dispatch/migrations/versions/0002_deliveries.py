"""carrier accounts, deliveries, offers, reports, callbacks, riders

Revision ID: dispatch_0002
Revises: dispatch_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "dispatch_0002"
down_revision: str | None = "dispatch_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carrier_account",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("carrier", sa.Text(), nullable=False),
        sa.Column("brand", sa.Text(), nullable=False),
        sa.Column("app_key", sa.Text(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("token_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("shop_id", sa.Text(), nullable=False),
        sa.Column("merchant_no", sa.Text(), nullable=False),
        sa.Column("bound_by", sa.Text(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_account")),
    )
    op.create_index("ix_carrier_account_key", "carrier_account", ["carrier", "app_key"], unique=False)
    op.create_index(
        "uq_carrier_account_dada_merchant",
        "carrier_account",
        ["merchant_no"],
        unique=True,
        postgresql_where=sa.text("brand = 'DADA' AND unbound_at IS NULL AND merchant_no <> ''"),
    )
    op.create_index(
        "uq_carrier_account_store",
        "carrier_account",
        ["merchant_id", "store_id", "carrier"],
        unique=True,
        postgresql_where=sa.text("unbound_at IS NULL"),
    )
    op.create_table(
        "carrier_callback",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("carrier", sa.Text(), nullable=False),
        sa.Column("query", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("delivery_id", sa.UUID(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_callback")),
    )
    op.create_index("ix_carrier_callback_outcome", "carrier_callback", ["outcome", "received_at"], unique=False)
    op.create_table(
        "delivery",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("strategy", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("candidates", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("tried", sa.Integer(), nullable=False),
        sa.Column("pickup", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dropoff", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("cargo_value_fen", sa.Integer(), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("offer_id", sa.UUID(), nullable=True),
        sa.Column("carrier", sa.Text(), nullable=True),
        sa.Column("waybill_id", sa.Text(), nullable=True),
        sa.Column("fee_fen", sa.Integer(), nullable=True),
        sa.Column("tip_fen", sa.Integer(), nullable=False),
        sa.Column("cancel_fee_fen", sa.Integer(), nullable=False),
        sa.Column("rider", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("rider_lat", sa.Float(), nullable=True),
        sa.Column("rider_lng", sa.Float(), nullable=True),
        sa.Column("rider_located_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("eta_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pickup_code", sa.Text(), nullable=True),
        sa.Column("finish_code", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("last_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
    )
    op.create_index("ix_delivery_merchant", "delivery", ["merchant_id", "created_at"], unique=False)
    op.create_index(op.f("ix_delivery_order_id"), "delivery", ["order_id"], unique=False)
    op.create_index(
        "uq_delivery_live_order", "delivery", ["order_id"], unique=True, postgresql_where=sa.text("ended_at IS NULL")
    )
    op.create_table(
        "rider",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("located_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rider")),
    )
    op.create_index(op.f("ix_rider_merchant_id"), "rider", ["merchant_id"], unique=False)
    op.create_table(
        "offer",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("carrier", sa.Text(), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=True),
        sa.Column("shop_order_id", sa.Text(), nullable=False),
        sa.Column("waybill_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("quote_fen", sa.Integer(), nullable=True),
        sa.Column("fee_fen", sa.Integer(), nullable=True),
        sa.Column("tip_fen", sa.Integer(), nullable=False),
        sa.Column("cancel_fee_fen", sa.Integer(), nullable=True),
        sa.Column("eta_seconds", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["carrier_account.id"], name=op.f("fk_offer_account_id_carrier_account")
        ),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], name=op.f("fk_offer_delivery_id_delivery")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer")),
        sa.UniqueConstraint("shop_order_id", name=op.f("uq_offer_shop_order_id")),
    )
    op.create_index(op.f("ix_offer_delivery_id"), "offer", ["delivery_id"], unique=False)
    op.create_index("ix_offer_waybill", "offer", ["carrier", "waybill_id"], unique=False)
    op.create_table(
        "rider_offer",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("rider_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("distance_m", sa.Integer(), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], name=op.f("fk_rider_offer_delivery_id_delivery")),
        sa.ForeignKeyConstraint(["rider_id"], ["rider.id"], name=op.f("fk_rider_offer_rider_id_rider")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rider_offer")),
        sa.UniqueConstraint("delivery_id", "rider_id", name=op.f("uq_rider_offer_delivery_id")),
    )
    op.create_index(
        "uq_rider_offer_open", "rider_offer", ["rider_id"], unique=True, postgresql_where=sa.text("status = 'offered'")
    )
    op.create_table(
        "delivery_change",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("offer_id", sa.UUID(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("rider_key", sa.Text(), nullable=False),
        sa.Column("action_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], name=op.f("fk_delivery_change_delivery_id_delivery")),
        sa.ForeignKeyConstraint(["offer_id"], ["offer.id"], name=op.f("fk_delivery_change_offer_id_offer")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_change")),
        sa.UniqueConstraint("offer_id", "code", "action_time", "rider_key", name=op.f("uq_delivery_change_offer_id")),
    )
    op.create_index(op.f("ix_delivery_change_delivery_id"), "delivery_change", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_change_delivery_id"), table_name="delivery_change")
    op.drop_table("delivery_change")
    op.drop_index("uq_rider_offer_open", table_name="rider_offer", postgresql_where=sa.text("status = 'offered'"))
    op.drop_table("rider_offer")
    op.drop_index("ix_offer_waybill", table_name="offer")
    op.drop_index(op.f("ix_offer_delivery_id"), table_name="offer")
    op.drop_table("offer")
    op.drop_index(op.f("ix_rider_merchant_id"), table_name="rider")
    op.drop_table("rider")
    op.drop_index("uq_delivery_live_order", table_name="delivery", postgresql_where=sa.text("ended_at IS NULL"))
    op.drop_index(op.f("ix_delivery_order_id"), table_name="delivery")
    op.drop_index("ix_delivery_merchant", table_name="delivery")
    op.drop_table("delivery")
    op.drop_index("ix_carrier_callback_outcome", table_name="carrier_callback")
    op.drop_table("carrier_callback")
    op.drop_index(
        "uq_carrier_account_store", table_name="carrier_account", postgresql_where=sa.text("unbound_at IS NULL")
    )
    op.drop_index(
        "uq_carrier_account_dada_merchant",
        table_name="carrier_account",
        postgresql_where=sa.text("brand = 'DADA' AND unbound_at IS NULL AND merchant_no <> ''"),
    )
    op.drop_index("ix_carrier_account_key", table_name="carrier_account")
    op.drop_table("carrier_account")
