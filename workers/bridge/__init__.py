"""The event bridge: object-storage events (MinIO-style webhooks, the SeaweedFS filer stream) -> Celery."""
