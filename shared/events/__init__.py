"""Object-storage events, normalised to the S3 notification record before anything else sees them."""

from shared.events.record import CREATED, REMOVED, ObjectEvent

__all__ = ["CREATED", "REMOVED", "ObjectEvent"]
