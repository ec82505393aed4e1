"""The albums HTTP API and a small album browser: one FastAPI app over the same services the tasks call.

``create_app`` takes plain values (a session factory, an S3 client, the API clients); only ``landmarks api serve``
reads settings. JSON lives under ``/v1`` (OpenAPI at ``/openapi.json``, docs at ``/docs``), pages under ``/ui``.
"""

from workers.api.app import create_app
from workers.api.urls import album_page_url

__all__ = ["album_page_url", "create_app"]
