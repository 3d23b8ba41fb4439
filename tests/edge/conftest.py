import asyncio
import io
import json
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse
from PIL import Image

from apps.accounts.services import create_device_token

LOOP_YAML = """
basemodel:
  name: FPN
  hyperparameters:
    input_size: 64
    backbone_width: 4
    fpn_channels: 16
    batch_size: 8
    max_iteration: 4
    seed: 3
hard_example_mining:
  name: {miner}
"""


def loop_yaml(miner: str = "CloudOnly") -> str:
    return LOOP_YAML.format(miner=miner)


@pytest.fixture(scope="session")
def edge_archive(tmp_path_factory):
    """A tiny FPN archive with its .tflite, trained for a few steps (once per session)."""
    from worker.ml.fpn import FPNModel
    from worker.ml.synthetic import generate_samples

    model = FPNModel(
        input_size=64, backbone_width=4, fpn_channels=16, batch_size=4, max_iteration=2, seed=1
    )
    model.train(generate_samples(4, "initial", seed=5, image_size=64))
    folder = tmp_path_factory.mktemp("edge-archive")
    with_litert = model.save(folder / "with-litert.zip", include_litert=True)
    without_litert = model.save(folder / "without-litert.zip")
    other = FPNModel(
        input_size=64, backbone_width=4, fpn_channels=16, batch_size=4, max_iteration=2, seed=2
    )
    other.train(generate_samples(4, "initial", seed=6, image_size=64))
    return {
        "with_litert": str(with_litert),
        "without_litert": str(without_litert),
        "other_with_litert": str(other.save(folder / "other.zip", include_litert=True)),
    }


def scene_png(seed: int, size=(96, 72), shift: int = 0) -> bytes:
    """A synthetic edge-domain scene: distinct seeds give distinct perceptual hashes."""
    from worker.ml.synthetic import generate_image

    image, _ = generate_image(seed, "edge", seed=seed, image_size=max(size))
    picture = Image.fromarray(image).resize(size)
    if shift:
        picture.putpixel((shift % size[0], 0), (255, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def edge_loop(db, admin_user, edge_archive):
    """A loop serving a registered version (pointer moved directly, no deploy job)."""
    from apps.datasets.services import create_dataset
    from apps.edge import serving
    from apps.loops import services as loops

    serving.clear()
    dataset = create_dataset(name="edge-site", class_names=["helmet", "vest", "cone"])
    loop = loops.create_loop(
        name="edge-line",
        dataset=dataset,
        algorithm_yaml=loop_yaml(),
        user=admin_user,
        gate_min_metrics={},
        gate_min_gain={},
        gate_max_forgetting=None,
    )
    version = loops.register_version(loop, edge_archive["with_litert"], source="uploaded")
    loops.move_deployed_pointer(
        version.pk, action="force", started_by="test", reason="test", job_id=None
    )
    loop.refresh_from_db()
    yield loop
    serving.clear()


def device_client(*loops, all_loops=False, name="cam-1", transport="rest"):
    """A client that sends the device token: through Django's test client (`rest`) or through
    the ASGI application as a server would call it (`asgi`)."""
    issued = create_device_token(name=name, created_by=None, loops=loops, all_loops=all_loops)
    headers = {"Authorization": f"Bearer {issued.raw_token}"}
    client = Client(headers=headers) if transport == "rest" else AsgiClient(headers)
    client.token = issued.device_token
    client.raw_token = issued.raw_token
    client.transport = transport
    return client


def named_file(data: bytes, name: str = "frame.png"):
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def agent_upload(client, loop, data, key=None, hard=True, boxes=None, detection=None, **fields):
    """An edge agent's intake upload: multipart image, detection and version."""
    if detection is None:
        detection = {"boxes": boxes or [], "hard": hard, "hardness": 0.8, "miner": "IBT"}
    return client.post(
        reverse("api-edge-intake", args=[loop.pk]),
        {"image": named_file(data), "detection": json.dumps(detection), **fields},
        headers={"Idempotency-Key": key} if key else None,
    )


@pytest.fixture
def transport():
    """How `device` sends; a test module that overrides this with params ["rest", "asgi"] runs
    each test both through the REST view and through the ASGI application, where a device's
    raw-image predict is answered by apps.edge.predict_route."""
    return "rest"


@pytest.fixture
def device(edge_loop, transport):
    return device_client(edge_loop, transport=transport)


@dataclass
class AsgiResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self):
        return json.loads(self.content)

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]


class AsgiClient:
    """POSTs through `ilportal.asgi.application` in the test's thread and transaction (the sync
    code it calls runs in this thread, as under Django's test client)."""

    def __init__(self, headers: dict[str, str] | None = None):
        self.headers = headers or {}

    def post(
        self, path, data=None, content_type=MULTIPART_CONTENT, headers=None, secure=False
    ) -> AsgiResponse:
        if content_type == MULTIPART_CONTENT:
            body = encode_multipart(BOUNDARY, data or {})
        elif isinstance(data, dict | list):  # as Django's test client encodes them
            body = json.dumps(data).encode()
        else:
            body = data.encode() if isinstance(data, str) else (data or b"")
        path, _, query = path.partition("?")
        sent = {
            "host": "testserver",
            "content-type": content_type,
            "content-length": str(len(body)),
            **{name.lower(): value for name, value in self.headers.items()},
            **{name.lower(): value for name, value in (headers or {}).items()},
        }
        scope = asgi_scope(path, sent, query) | ({"scheme": "https"} if secure else {})
        # As Django's test client does: closing "old" connections would end the test's
        # transaction.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            return async_to_sync(_call)(scope, body)
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


def asgi_scope(path: str, headers: dict[str, str], query: str = "") -> dict:
    """An HTTP POST scope as an ASGI server hands it to the application."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def _call(scope, body: bytes) -> AsgiResponse:
    from ilportal.asgi import application

    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        # The client stays connected: Django (5.0+) would abort a request on a disconnect.
        await asyncio.Future()

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    return AsgiResponse(
        status_code=start["status"],
        headers={name.decode().lower(): value.decode() for name, value in start["headers"]},
        content=b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
    )
