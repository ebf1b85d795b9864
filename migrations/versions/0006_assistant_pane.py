"""assistant pane: pane threads and their context, feedback on answers, and the workspace
settings suggested_prompts and loading_messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00.000000

Two new tables and two nullable JSON columns on channel_settings (existing rows inherit the
defaults). ``answer_feedback`` rows cascade from turns, so retention prunes them with the
turns; ``assistant_threads`` are pruned by their own ``updated_at``.
tests/storage/test_migrations.py checks both directions on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("suggested_prompts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("loading_messages", sa.JSON(), nullable=True))

    op.create_table(
        "assistant_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("titled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_threads")),
        sa.UniqueConstraint(
            "channel_id", "thread_ts", name=op.f("uq_assistant_threads_channel_id_thread_ts")
        ),
    )
    op.create_index(
        "ix_assistant_threads_updated_at", "assistant_threads", ["updated_at"], unique=False
    )

    op.create_table(
        "answer_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["turn_id"],
            ["turns.id"],
            name=op.f("fk_answer_feedback_turn_id_turns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer_feedback")),
        sa.UniqueConstraint("turn_id", "user_id", name=op.f("uq_answer_feedback_turn_id_user_id")),
    )
    op.create_index(
        "ix_answer_feedback_team_id_channel_id_updated_at",
        "answer_feedback",
        ["team_id", "channel_id", "updated_at"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema (drops the pane threads and the feedback)."""
    op.drop_index("ix_answer_feedback_team_id_channel_id_updated_at", table_name="answer_feedback")
    op.drop_table("answer_feedback")
    op.drop_index("ix_assistant_threads_updated_at", table_name="assistant_threads")
    op.drop_table("assistant_threads")
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("loading_messages")
        batch.drop_column("suggested_prompts")
