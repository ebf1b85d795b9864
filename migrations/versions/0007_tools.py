"""tools: the channel settings mcp_servers, hosted_tools and vector_store_ids, and the
tool_calls table

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 03:00:00.000000

Three nullable JSON columns on channel_settings (existing rows inherit: no tools) and one
table. ``tool_calls`` rows cascade from turns, so retention prunes them with the turns; they
hold no arguments or output. tests/storage/test_migrations.py checks both directions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("mcp_servers", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("hosted_tools", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("vector_store_ids", sa.JSON(), nullable=True))

    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("output_chars", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["turn_id"],
            ["turns.id"],
            name=op.f("fk_tool_calls_turn_id_turns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_calls")),
    )
    op.create_index(op.f("ix_tool_calls_turn_id"), "tool_calls", ["turn_id"], unique=False)
    op.create_index(
        "ix_tool_calls_team_id_channel_id_created_at",
        "tool_calls",
        ["team_id", "channel_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema (drops the tool-call records)."""
    op.drop_index("ix_tool_calls_team_id_channel_id_created_at", table_name="tool_calls")
    op.drop_index(op.f("ix_tool_calls_turn_id"), table_name="tool_calls")
    op.drop_table("tool_calls")
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("vector_store_ids")
        batch.drop_column("hosted_tools")
        batch.drop_column("mcp_servers")
