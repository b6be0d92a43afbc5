"""A rider's offers are found by rider and state: nothing indexed `rider_id` alone (the unique index of open offers
holds only those), so with many deliveries under way the rider's tasks (their open and accepted offers) read the whole
`rider_offer` table, or looked up the rider's offer for each delivery under way of the merchant.

Revision ID: dispatch_0009_rider_offer_status
Revises: dispatch_0008_claim_function
"""

from alembic import op

revision = "dispatch_0009_rider_offer_status"
down_revision = "dispatch_0008_claim_function"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_rider_offer_rider_status", "rider_offer", ["rider_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rider_offer_rider_status", table_name="rider_offer")
