"""The console of `./ilp run` keeps the lines people read: the routine lines of the housekeeping
beat sends every few seconds are dropped, everything else (and any warning) stays."""

import logging

from ilportal.celery import QUIET_TASKS, RoutineHousekeepingFilter, app


def _record(name: str, level: int, message: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_routine_housekeeping_lines_are_dropped_and_the_rest_kept():
    keep = RoutineHousekeepingFilter().filter
    received = "Task %(name)s[%(id)s] received"
    for task in QUIET_TASKS:
        fields = {"name": task, "id": "x"}
        assert not keep(_record("celery.worker.strategy", logging.INFO, received, fields))
        assert not keep(
            _record("celery.beat", logging.INFO, "Scheduler: Sending due task %s (%s)", "t", task)
        )
        failed = _record("celery.app.trace", logging.ERROR, "Task %s raised", task)
        assert keep(failed)
    assert keep(
        _record(
            "celery.worker.strategy",
            logging.INFO,
            received,
            {"name": "ilportal.train_model", "id": "y"},
        )
    )
    assert keep(_record("apps.triggers", logging.INFO, "ilportal.check_trigger_rules fired"))


def test_the_quiet_tasks_are_the_ones_beat_sends():
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert set(QUIET_TASKS) <= scheduled
