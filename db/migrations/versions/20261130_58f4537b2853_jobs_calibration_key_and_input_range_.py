"""jobs: calibration_key and input_range (int8 from the chat)

Revision ID: 58f4537b2853
Revises: 45d1b70333aa
Create Date: 2026-11-30 12:40:25.804219
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "58f4537b2853"
down_revision: str | Sequence[str] | None = "45d1b70333aa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calibration_key", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("input_range", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("input_range")
        batch_op.drop_column("calibration_key")
