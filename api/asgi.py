"""Entry point for uvicorn workers: the database URL comes from the parent `serve`."""

from __future__ import annotations

import os

from litestar import Litestar

from api.app import create_app
from api.observability import configure_logging
from engine.config import Settings


def app_factory() -> Litestar:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    url = os.environ.get("OMNIROUTE_DATABASE_URL")
    if not url:
        raise RuntimeError("OMNIROUTE_DATABASE_URL is not set; start the service with `omniroute serve`")
    return create_app(url, settings)
