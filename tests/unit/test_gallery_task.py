"""The cleaning task is registered under its stable name and routed to the low-priority `cleaning` queue."""

from __future__ import annotations


def test_clean_gallery_is_routed_to_the_cleaning_queue() -> None:
    from workers.celery_app import app

    app.loader.import_default_modules()
    assert "cleaning.clean_gallery" in app.tasks
    assert app.amqp.router.route({}, "cleaning.clean_gallery")["queue"].name == "cleaning"
