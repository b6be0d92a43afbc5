"""QR secrets sealed at rest; lockout counts per store and device only for callers who work there

Revision ID: redemption_0003
Revises: redemption_0002

Existing clear secrets are sealed with REDEMPTION_VAULT_KEY (read from the environment, as the service reads it),
each bound to its code's id; the clear column is then dropped. Failures recorded before this revision keep counting
towards their principal only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.redemption.settings import RedemptionSettings
from shared.vault import Vault

revision: str = "redemption_0003"
down_revision: str | None = "redemption_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("code", sa.Column("secret_sealed", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret FROM code")).all()
    if rows:
        vault = Vault(RedemptionSettings().vault_key, "REDEMPTION_VAULT_KEY")
        for code_id, secret in rows:
            bind.execute(
                sa.text("UPDATE code SET secret_sealed = :sealed WHERE id = :id"),
                {"sealed": vault.seal_bytes(bytes(secret), str(code_id)), "id": code_id},
            )
    op.alter_column("code", "secret_sealed", nullable=False)
    op.drop_column("code", "secret")
    op.add_column("attempt", sa.Column("lockout_store", sa.Text(), nullable=True))
    op.add_column("attempt", sa.Column("lockout_device", sa.Text(), nullable=True))
    op.create_index("ix_attempt_lockout_store", "attempt", ["lockout_store", "at"], unique=False)
    op.create_index("ix_attempt_lockout_device", "attempt", ["lockout_device", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_attempt_lockout_device", table_name="attempt")
    op.drop_index("ix_attempt_lockout_store", table_name="attempt")
    op.drop_column("attempt", "lockout_device")
    op.drop_column("attempt", "lockout_store")
    op.add_column("code", sa.Column("secret", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret_sealed FROM code")).all()
    if rows:
        vault = Vault(RedemptionSettings().vault_key, "REDEMPTION_VAULT_KEY")
        for code_id, sealed in rows:
            bind.execute(
                sa.text("UPDATE code SET secret = :secret WHERE id = :id"),
                {"secret": vault.open_bytes(bytes(sealed), str(code_id)), "id": code_id},
            )
    op.alter_column("code", "secret", nullable=False)
    op.drop_column("code", "secret_sealed")
