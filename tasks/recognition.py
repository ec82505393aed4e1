"""Celery tasks of the `recognition` queue."""
