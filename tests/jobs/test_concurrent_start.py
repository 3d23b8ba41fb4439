import threading

import pytest
from django.db import connection

from apps.jobs import services
from apps.jobs.models import Job


@pytest.mark.django_db(transaction=True)
def test_racing_starts_create_one_job(monkeypatch):
    """Two requests at the same moment (two tabs, a double click) end with one active job."""
    monkeypatch.setattr(services, "_enqueue", lambda *args: None)
    barrier = threading.Barrier(4)
    outcomes = []

    def start():
        barrier.wait()
        try:
            outcomes.append(services.start_job("system_check", scope="loop:7").pk)
        except services.JobError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Job.objects.filter(scope="loop:7").count() == 1
    assert sorted(map(str, outcomes)).count("JobAlreadyActive") == 3
