"""Celery tasks of the `albums` queue."""
