"""held_answers: the final text of an answer not yet whole in Slack

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 23:55:00.000000

One row per turn whose answer is finished by the model but not yet delivered whole (Slack
rate-limited it, or the process stopped); a restart finishes delivering it. The row goes when
the turn closes, and with its turn (ON DELETE CASCADE).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "held_answers",
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("delivery", sa.Text(), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("turn_id"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("held_answers")
