"""Alembic migrations for db/models.py; run them with db.migrate (no alembic.ini)."""
