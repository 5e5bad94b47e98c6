"""Schema revisions: the host column and its index through Alembic, online and idempotent."""
