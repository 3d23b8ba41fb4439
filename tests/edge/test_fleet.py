"""The fleet page: devices of each loop with their books; silent ones flagged."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.edge.models import EdgeDevice
from apps.edge.services import flush_device_books
from tests.edge.conftest import device_client, scene_png

pytestmark = pytest.mark.django_db


def test_fleet_shows_devices_books_and_flags_silent_ones(edge_loop, client_for, viewer_user):
    busy = device_client(edge_loop, name="gate-cam")
    quiet = device_client(edge_loop, name="yard-cam")
    url = reverse("api-edge-predict", args=[edge_loop.pk])
    busy.post(url, scene_png(1), content_type="image/png")
    busy.post(url, b"junk", content_type="image/png")
    quiet.post(url, scene_png(2), content_type="image/png")
    flush_device_books()  # then back-date the quiet one's last request
    EdgeDevice.objects.filter(token=quiet.token).update(
        last_seen_at=timezone.now() - timedelta(hours=2)
    )
    page = client_for(viewer_user).get(reverse("edge:fleet"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "gate-cam" in html and "yard-cam" in html and "edge-line" in html
    busy_row = EdgeDevice.objects.get(token=busy.token)
    quiet_row = EdgeDevice.objects.get(token=quiet.token)
    row = html.split(f'data-testid="device-{busy_row.pk}"')[1].split("</tr>")[0]
    assert "<td>v1</td>" in row and "<td>1</td><td>1</td><td>1</td>" in row
    assert 'data-testid="silent"' not in row
    quiet_html = html.split(f'data-testid="device-{quiet_row.pk}"')[1].split("</tr>")[0]
    assert 'data-testid="silent"' in quiet_html
    assert "2 hard queued" in html


def test_heartbeat_reports_the_version_an_agent_runs(edge_loop, device):
    response = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]),
        {"version": edge_loop.deployed_version_id, "health": {"queue": 4}},
        content_type="application/json",
    )
    assert response.status_code == 204
    flush_device_books()
    row = EdgeDevice.objects.get(token=device.token)
    assert row.version_id == edge_loop.deployed_version_id and row.health == {"queue": 4}
    bad = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]),
        {"version": 999999},
        content_type="application/json",
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("body", ["[1]", '"text"', "3", "null", "true"])
def test_a_heartbeat_that_is_not_a_json_object_is_a_400(edge_loop, device, body):
    """A JSON list, string, number or null is refused with a message (it was a 500)."""
    response = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]), body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "must be a JSON object" in response.json()["detail"]
    assert EdgeDevice.objects.get(token=device.token).errors == 1


@pytest.mark.parametrize("health", [[], "fine", 3])
def test_a_heartbeat_health_must_be_an_object(edge_loop, device, health):
    response = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]),
        {"version": edge_loop.deployed_version_id, "health": health},
        content_type="application/json",
    )
    assert (
        response.status_code == 400 and "health must be a JSON object" in response.json()["detail"]
    )


def test_a_heartbeat_may_say_nothing_yet(edge_loop, device):
    """An agent that has no model yet (first start, portal unreachable before)."""
    for body in ({}, {"version": None, "health": None}):
        url = reverse("api-edge-heartbeat", args=[edge_loop.pk])
        response = device.post(url, body, content_type="application/json")
        assert response.status_code == 204, response.content


def test_a_heartbeat_health_over_64_kib_is_a_413_and_keeps_the_last_one(edge_loop, device):
    """It is written to the device's row on every beat."""
    url = reverse("api-edge-heartbeat", args=[edge_loop.pk])
    assert (
        device.post(url, {"health": {"ok": 1}}, content_type="application/json").status_code == 204
    )
    response = device.post(
        url, {"health": {"error": "x" * 70_000}}, content_type="application/json"
    )
    assert response.status_code == 413 and "at most 65,536" in response.json()["detail"]
    assert EdgeDevice.objects.get(token=device.token, loop=edge_loop).health == {"ok": 1}


def test_the_agents_health_stays_small_whatever_its_errors_quote(tmp_path):
    from worker.edge.agent import ERROR_CHARS, EdgeAgent

    agent = EdgeAgent("http://127.0.0.1:9", "ilp_x", 1, tmp_path)
    agent.health.last_sync_error = agent.health.upload_error = "<html>" + "y" * 500_000
    agent.health.refused = [{"version": f"v{n}", "reason": "z" * 500_000} for n in range(9)]
    status = agent.status()
    assert len(json.dumps(status)) < 16 * 1024
    assert len(status["upload_error"]) == ERROR_CHARS and len(status["refused"]) == 5


def test_nul_characters_in_a_heartbeat_health_are_not_stored(edge_loop, device):
    """An agent's health quotes what portals and proxies answered (its last errors): a NUL in
    it was a 500 on PostgreSQL (jsonb refuses \\u0000), and so was every heartbeat after."""
    health = {"last_sync_error": "403: proxy\x00page", "nested": [{"a\x00b": ["\x00"]}]}
    url = reverse("api-edge-heartbeat", args=[edge_loop.pk])
    response = device.post(url, {"health": health}, content_type="application/json")
    assert response.status_code == 204, response.content
    stored = EdgeDevice.objects.get(token=device.token, loop=edge_loop).health
    assert stored == {"last_sync_error": "403: proxypage", "nested": [{"ab": [""]}]}


@pytest.mark.parametrize(
    "version_of",
    [
        pytest.param(lambda v: True, id="true"),
        pytest.param(lambda v: v + 0.5, id="non-integral"),
        pytest.param(lambda v: f"{v}.5", id="non-integral-string"),
        pytest.param(lambda v: "true", id="true-string"),
        pytest.param(lambda v: str(v), id="digits-as-a-string"),
        pytest.param(lambda v: [v], id="list"),
        pytest.param(lambda v: {"id": v}, id="object"),
    ],
)
def test_a_heartbeat_version_must_be_an_integer_id(edge_loop, device, version_of):
    """`true` and `1.9` are not version ids, though int() made 1 of them."""
    response = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]),
        {"version": version_of(edge_loop.deployed_version_id)},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "version must be a version id (an integer)" in response.json()["detail"]
    flush_device_books()
    assert EdgeDevice.objects.get(token=device.token).version_id is None


def test_a_heartbeat_version_may_be_an_integral_number(edge_loop, device):
    url = reverse("api-edge-heartbeat", args=[edge_loop.pk])
    version_id = edge_loop.deployed_version_id
    for version in (float(version_id), None):
        answer = device.post(url, {"version": version}, content_type="application/json")
        assert answer.status_code == 204, (version, answer.content)
    for unknown in (10**30, -version_id, 0):
        answer = device.post(url, {"version": unknown}, content_type="application/json")
        assert answer.status_code == 400 and "not a version of this loop" in answer.json()["detail"]


def test_the_fleet_page_needs_a_login(client):
    response = client.get(reverse("edge:fleet"))
    assert response.status_code == 302
