"""Celery tasks of the `cleaning` queue."""
