"""The job sockets' Origin check: scheme, host and port must be the portal's own (or trusted)."""

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator

from ilportal.websocket_origin import SameOriginValidator


class Accepting(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()


async def connects(origin, host="127.0.0.1:8114", scheme="ws"):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(
        SameOriginValidator(Accepting.as_asgi()), "/ws/jobs/1/", headers=headers
    )
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "scheme", "accepted"),
    [
        ("http://127.0.0.1:8114", "ws", True),
        ("https://127.0.0.1:8114", "wss", True),
        ("http://127.0.0.1:9999", "ws", False),  # another port on the same host
        ("http://127.0.0.1", "ws", False),
        ("https://127.0.0.1:8114", "ws", False),  # another scheme
        ("http://127.0.0.1:8114", "wss", False),
        ("http://localhost:8114", "ws", False),  # another host name, though an allowed one
        ("http://evil.example", "ws", False),
        ("null", "ws", False),
        (None, "ws", False),
    ],
)
async def test_only_the_portals_own_origin_is_accepted(origin, scheme, accepted):
    assert await connects(origin, scheme=scheme) is accepted


async def test_a_host_outside_allowed_hosts_is_refused_even_with_a_matching_origin(settings):
    settings.ALLOWED_HOSTS = ["portal.example"]
    assert await connects("http://portal.example:8114", host="portal.example:8114")
    assert not await connects("http://evil.example:8114", host="evil.example:8114")


async def test_csrf_trusted_origins_are_accepted(settings):
    """Behind a TLS proxy the portal sees ws:// and the browser sends an https:// Origin: the
    same CSRF_TRUSTED_ORIGINS entry that lets its forms post lets its sockets connect."""
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example", "https://*.corp.example"]
    assert await connects("https://portal.example", host="portal.example")
    assert await connects("https://labels.corp.example", host="labels.corp.example")
    assert not await connects("http://portal.example:8080", host="portal.example")
    assert not await connects("https://portal.example:8443", host="portal.example")
