"""The service's log configuration (api.observability.configure_logging)."""

from __future__ import annotations

import logging

from api.observability import configure_logging


def test_scheduler_runs_are_not_logged_at_info_but_their_failures_are():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        executor = logging.getLogger("apscheduler.executors.default")
        assert not executor.isEnabledFor(logging.INFO)  # "Running job …" every 2 s
        assert executor.isEnabledFor(logging.WARNING)  # a run missed
        assert executor.isEnabledFor(logging.ERROR)  # a job raised
        assert logging.getLogger("omniroute.jobs").isEnabledFor(logging.INFO)  # what a job did
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("apscheduler.executors").setLevel(logging.NOTSET)
        logging.getLogger("uvicorn.access").disabled = False
