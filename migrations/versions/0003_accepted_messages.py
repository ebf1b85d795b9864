"""accepted messages wait in the database; turns hold a token reservation while they run

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 23:40:00.000000

``accepted_messages`` keeps each message Slack delivered until its turn starts (so a crash or a
shutdown never loses one). ``turns.reserved_tokens`` is what a running turn holds against the
daily token budgets; existing rows get 0 (they are all closed or closed at start-up).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "accepted_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accepted_messages")),
    )
    op.create_index(
        op.f("ix_accepted_messages_owner"), "accepted_messages", ["owner"], unique=False
    )
    op.create_index(
        "ix_accepted_messages_team_id_channel_id_thread_ts_ts",
        "accepted_messages",
        ["team_id", "channel_id", "thread_ts", "ts"],
        unique=False,
    )
    # The server default fills the rows that exist; new rows get 0 from the model.
    with op.batch_alter_table("turns") as batch:
        batch.add_column(
            sa.Column("reserved_tokens", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Downgrade schema (drops messages still waiting, and the reservations)."""
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("reserved_tokens")
    op.drop_index(
        "ix_accepted_messages_team_id_channel_id_thread_ts_ts", table_name="accepted_messages"
    )
    op.drop_index(op.f("ix_accepted_messages_owner"), table_name="accepted_messages")
    op.drop_table("accepted_messages")
