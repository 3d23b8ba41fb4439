import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from apps.jobs import events, services
from apps.jobs.consumers import CLOSE_FORBIDDEN, CLOSE_UNSUPPORTED_DATA, JobProgressConsumer
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_the_database_thread_connection():
    """The consumer's queries run in channels' database thread, whose connection would otherwise
    outlive the test (and block dropping the PostgreSQL test database at the end)."""
    from channels.db import database_sync_to_async
    from django.db import connections

    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def in_memory_layer(settings):
    """For the refusals, which never reach the channel layer: with the embedded Redis, a refused
    consumer's pending layer read was once seen to hang the event loop's shutdown for the whole
    test timeout (only deep in a full SQLite run; see the session note)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def communicator_for(user, job_id):
    communicator = WebsocketCommunicator(JobProgressConsumer.as_asgi(), f"/ws/jobs/{job_id}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"job_id": job_id}}
    return communicator


async def test_a_viewer_gets_the_current_state_then_live_updates():
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(UserFactory)(role="viewer")
    job = await database_sync_to_async(JobFactory)(progress=0)
    communicator = communicator_for(user, job.pk)
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["event"] == "state" and first["job"]["status"] == "queued"

    await database_sync_to_async(services.claim_job)(job.pk, worker="w1")
    await database_sync_to_async(services.record_progress)(job.pk, 40, "working")
    await database_sync_to_async(services.append_log)(job.pk, "a line")
    running = await communicator.receive_json_from(timeout=5)
    progressed = await communicator.receive_json_from(timeout=5)
    logged = await communicator.receive_json_from(timeout=5)
    assert running["job"]["status"] == "running"
    assert (progressed["job"]["progress"], progressed["job"]["message"]) == (40, "working")
    assert logged["event"] == "log" and logged["line"].endswith("a line")
    await communicator.disconnect()


@pytest.mark.parametrize("who", ["anonymous", "no role"])
async def test_users_who_may_not_see_jobs_are_refused(who, in_memory_layer):
    from channels.db import database_sync_to_async

    job = await database_sync_to_async(JobFactory)()
    user = AnonymousUser() if who == "anonymous" else await database_sync_to_async(UserFactory)()
    communicator = communicator_for(user, job.pk)
    connected, code = await communicator.connect()
    assert not connected and code == CLOSE_FORBIDDEN


async def test_a_missing_job_is_refused(in_memory_layer):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(UserFactory)(role="admin")
    connected, code = await communicator_for(user, 999999).connect()
    assert not connected and code == CLOSE_FORBIDDEN


async def test_a_client_that_sends_is_closed_on(in_memory_layer):
    """The socket only carries the job's updates to the page; nothing a client sends is read."""
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(UserFactory)(role="viewer")
    job = await database_sync_to_async(JobFactory)()
    communicator = communicator_for(user, job.pk)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_json_from(timeout=5)  # the current state
    await communicator.send_to(text_data="[" * 500_000)
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_UNSUPPORTED_DATA}
    await communicator.wait()


def test_group_names_are_per_job():
    assert events.group_name(7) == "job_7"
