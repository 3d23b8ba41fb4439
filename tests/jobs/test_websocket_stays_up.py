"""The job WebSocket stays up while nothing happens, and the page can re-read what it missed."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from apps.jobs import services
from tests.factories import JobFactory, UserFactory


def test_the_layer_reads_longer_than_the_server_may_block():
    """redis-py's default read timeout (5 s) equals channels_redis' blocking pop (5 s): the read
    timed out first and closed the page's socket ("Timeout reading from …/redis.sock")."""
    layer = get_channel_layer()
    [host] = layer.hosts
    assert host["socket_timeout"] > layer.brpop_timeout


@pytest.mark.slow
async def test_an_idle_receive_outlasts_the_blocking_pop_without_a_read_timeout():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    try:
        # Nothing is sent: the receive must simply keep waiting (past two blocking pops).
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), timeout=layer.brpop_timeout * 2 + 1)
        await layer.send(channel, {"type": "job.state", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), timeout=5))["n"] == 1
    finally:
        await layer.close_pools()


@pytest.mark.django_db
def test_the_state_endpoint_gives_the_whole_log_for_a_reconnect(client):
    job = JobFactory()
    services.claim_job(job.pk, worker="w1")
    services.append_log(job.pk, "line sent while the page was reconnecting")
    client.force_login(UserFactory(role="viewer"))
    state = client.get(f"/jobs/{job.pk}/state/").json()
    assert state["status"] == "running"
    assert "line sent while the page was reconnecting" in state["log"]
