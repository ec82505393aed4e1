"""Celery tasks of the `ingest` queue."""
