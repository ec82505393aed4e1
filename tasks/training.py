"""Celery tasks of the `training` queue."""
