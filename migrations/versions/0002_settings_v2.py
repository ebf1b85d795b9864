"""channel settings v2: reasoning_summary, truncation, require_mention, enabled,
daily_token_budget columns and the settings_audit table

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000

The new channel_settings columns are nullable without a server default, so existing rows
keep their values and inherit the new settings (NULL). SQLite goes through batch mode
(``ALTER TABLE ADD COLUMN`` on upgrade, a table rebuild on downgrade); PostgreSQL alters in
place. tests/storage/test_migrations.py checks both directions on both engines.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW_SETTINGS = (
    "reasoning_summary",
    "truncation",
    "require_mention",
    "enabled",
    "daily_token_budget",
    "workspace_daily_token_budget",
    "user_hourly_requests",
)


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("reasoning_summary", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("truncation", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("require_mention", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("daily_token_budget", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("workspace_daily_token_budget", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("user_hourly_requests", sa.Integer(), nullable=True))

    op.create_table(
        "settings_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        # "" is the workspace-default layer (see storage.models.WORKSPACE_DEFAULT_CHANNEL).
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        # JSON-encoded values; NULL means "inherit".
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=32), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings_audit")),
    )
    op.create_index(
        op.f("ix_settings_audit_changed_at"), "settings_audit", ["changed_at"], unique=False
    )
    op.create_index(
        "ix_settings_audit_team_id_channel_id_changed_at",
        "settings_audit",
        ["team_id", "channel_id", "changed_at"],
        unique=False,
    )
    # tokens_used_since: a channel's recent turns (daily budgets, /ai usage).
    op.create_index(
        "ix_turns_team_id_channel_id_created_at",
        "turns",
        ["team_id", "channel_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema (drops the audit trail and the new settings' values)."""
    op.drop_index("ix_turns_team_id_channel_id_created_at", table_name="turns")
    op.drop_index("ix_settings_audit_team_id_channel_id_changed_at", table_name="settings_audit")
    op.drop_index(op.f("ix_settings_audit_changed_at"), table_name="settings_audit")
    op.drop_table("settings_audit")

    with op.batch_alter_table("channel_settings") as batch:
        for name in reversed(_NEW_SETTINGS):
            batch.drop_column(name)
