"""Error kinds the pipeline decides on: transient faults are retried, permanent ones are recorded once."""


class TransientError(Exception):
    """A fault that may pass (S3, database or broker unavailable); the task is retried with backoff."""


class PermanentError(Exception):
    """Input that will never succeed as it is (undecodable image, no owner): recorded once, not retried."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Celery and multiprocessing pickle exceptions; the default would call __init__ with one argument.
        return type(self), (self.reason, str(self))


class ServiceUnavailable(TransientError):
    """A required service does not answer; the message names it and its address."""
