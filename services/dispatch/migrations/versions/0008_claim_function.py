"""The consumer's subject lock and inbox claim in one call (`songda_claim_event`, shared/migrations.py): one round
trip fewer for every event the dispatch service handles.

Revision ID: dispatch_0008_claim_function
Revises: dispatch_0007_timer_due
"""

from shared.migrations import create_claim_function, drop_claim_function

revision = "dispatch_0008_claim_function"
down_revision = "dispatch_0007_timer_due"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_claim_function()


def downgrade() -> None:
    drop_claim_function()
