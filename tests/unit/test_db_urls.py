"""`landmarks status` connects with psycopg2 from the SQLAlchemy URL in the settings (libpq takes URIs)."""

from __future__ import annotations

import pytest

from shared.db.urls import libpq_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/landmarks", "postgresql://postgres@127.0.0.1:5432/landmarks"),
        ("postgresql://app:s%2Fcret@db/landmarks?sslmode=require", "postgresql://app:s%2Fcret@db/landmarks?sslmode=require"),
        ("postgres://app@db/x", "postgresql://app@db/x"),
    ],
)  # fmt: skip
def test_the_driver_is_dropped_and_the_rest_kept(url: str, expected: str) -> None:
    assert libpq_url(url) == expected


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        libpq_url("sqlite:///x.db")
