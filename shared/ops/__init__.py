"""Operator services: which photos to reprocess, fleet status from the database, failures to inspect and retry.

Free of Celery and Redis like the rest of ``shared``: callers pass an ``enqueue`` callable and broker figures in.
"""
