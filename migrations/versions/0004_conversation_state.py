"""conversation state: transcripts, endpoint capabilities, one-time thread notes, the
per-channel conversation_state setting, and response-id columns wide enough for relays

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 12:00:00.000000

New tables, one nullable column on channel_settings (existing rows inherit), and the response
id columns widened from 255 to 2048 characters (LiteLLM's proxy mints ids of ~450 characters,
which PostgreSQL refused). The transcript rows cascade from turns and threads, so retention
prunes them with the turns.
tests/storage/test_migrations.py checks both directions on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_WIDE_ID = sa.String(length=2048)
_OLD_ID = sa.String(length=255)


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("conversation_state", sa.String(length=16), nullable=True))
    with op.batch_alter_table("threads") as batch:
        batch.alter_column("head_response_id", type_=_WIDE_ID, existing_type=_OLD_ID)
    with op.batch_alter_table("turns") as batch:
        batch.alter_column("response_id", type_=_WIDE_ID, existing_type=_OLD_ID)
        batch.alter_column("previous_response_id", type_=_WIDE_ID, existing_type=_OLD_ID)

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
    # Ids longer than 255 characters do not fit back: they are cut (a chain through them is
    # lost, which the service recovers from on the next turn).
    for table, columns in (
        ("turns", ("response_id", "previous_response_id")),
        ("threads", ("head_response_id",)),
    ):
        for column in columns:
            op.execute(
                sa.text(
                    f"UPDATE {table} SET {column} = substr({column}, 1, 255) "
                    f"WHERE length({column}) > 255"
                )
            )
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=_OLD_ID, existing_type=_WIDE_ID)
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("conversation_state")
