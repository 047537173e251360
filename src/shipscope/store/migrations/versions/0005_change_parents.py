"""Changes keep their parent commits, so lead time can follow a real history between two deploys.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("changes", sa.Column("parents", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("changes", "parents")
