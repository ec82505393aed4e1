"""Database layer: SQLAlchemy 2 models of the album schema and session helpers."""
