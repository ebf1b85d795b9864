"""the workspace setting language: the bot's own words in one language for everyone, or
"auto" (each person's Slack locale)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:30:00.000000

One nullable column on channel_settings (existing rows inherit "auto").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("language")
