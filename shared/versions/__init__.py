"""Model versions: building one from the gallery, publishing bundles to object storage, the
registry of versions and which one is active."""
