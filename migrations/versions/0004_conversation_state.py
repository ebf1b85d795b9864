"""conversation state: transcripts, endpoint capabilities, one-time thread notes, and the
per-channel conversation_state setting

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-05 12:00:00.000000

New tables only, plus one nullable column on channel_settings (existing rows inherit). The
transcript rows cascade from turns and threads, so retention prunes them with the turns.
tests/storage/test_migrations.py checks both directions on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("conversation_state", sa.String(length=16), nullable=True))

    op.create_table(
        "transcript_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("files", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_transcript_entries_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["turn_id"],
            ["turns.id"],
            name=op.f("fk_transcript_entries_turn_id_turns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_entries")),
    )
    op.create_index(
        "ix_transcript_entries_thread_id_id",
        "transcript_entries",
        ["thread_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_transcript_entries_turn_id", "transcript_entries", ["turn_id"], unique=False
    )

    op.create_table(
        "endpoint_capabilities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("chains", sa.String(length=16), nullable=False),
        sa.Column("chains_source", sa.String(length=32), nullable=False),
        sa.Column("tools", sa.Boolean(), nullable=True),
        sa.Column("streaming", sa.Boolean(), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_capabilities")),
        sa.UniqueConstraint(
            "endpoint", "model", name=op.f("uq_endpoint_capabilities_endpoint_model")
        ),
    )

    op.create_table(
        "thread_notes",
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_thread_notes_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("thread_id", "kind", name=op.f("pk_thread_notes")),
    )


def downgrade() -> None:
    """Downgrade schema (drops the transcripts, capability records and notes)."""
    op.drop_table("thread_notes")
    op.drop_table("endpoint_capabilities")
    op.drop_index("ix_transcript_entries_turn_id", table_name="transcript_entries")
    op.drop_index("ix_transcript_entries_thread_id_id", table_name="transcript_entries")
    op.drop_table("transcript_entries")
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("conversation_state")
