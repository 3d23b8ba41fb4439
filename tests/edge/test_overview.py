"""The devices of a loop on the dashboard: the silent-device alert, the intake per day, what each
device sent; and the alert on the home page's card."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.services import create_device_token
from apps.dashboard.charts import last_days
from apps.edge.models import EdgeDevice, IntakeRecord
from apps.edge.overview import devices_overview, intake_per_day, loop_page_devices, silent_alert
from apps.loops.models import Loop
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def loop(db):
    return Loop.objects.create(name="yard", dataset=DatasetFactory(), algorithm_yaml="x: 1\n")


def device(loop, name, *, seen_ago=None, revoked=False, images=0, hard=0):
    token = create_device_token(name=name, created_by=None, loops=[loop]).device_token
    if revoked:
        token.revoked_at = timezone.now()
        token.save()
    return EdgeDevice.objects.create(
        token=token,
        loop=loop,
        last_seen_at=None if seen_ago is None else timezone.now() - seen_ago,
        images_sent=images,
        hard_sent=hard,
    )


def test_a_device_silent_longer_than_the_setting_raises_an_alert(loop, settings):
    settings.EDGE_SILENT_AFTER_S = 600
    device(loop, "gate-cam", seen_ago=timedelta(minutes=9))
    assert silent_alert(devices_overview([loop.pk])[loop.pk]) is None
    device(loop, "yard-cam", seen_ago=timedelta(minutes=11))
    device(loop, "old-cam", seen_ago=timedelta(days=3), revoked=True)  # expected to be quiet
    alert = silent_alert(devices_overview([loop.pk])[loop.pk])
    assert alert.startswith("1 device silent for more than 10 min: yard-cam (11")
    assert "gate-cam" not in alert and "old-cam" not in alert


def test_a_loop_without_devices_has_no_devices_section(loop):
    assert devices_overview([loop.pk]) == {}


def test_intake_per_day_counts_each_outcome_per_day(loop):
    IntakeRecord.objects.bulk_create(
        IntakeRecord(loop=loop, outcome=outcome, image_hash=n, hard=True, hardness=0.5)
        for n, outcome in enumerate(["queued", "queued", "over_budget", "queued", "duplicate"])
    )
    old = IntakeRecord.objects.order_by("id")[:1].get()
    IntakeRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    today = timezone.localdate()
    counts = intake_per_day(loop.pk, last_days(7, today))
    assert counts == {
        today: {"queued": 2, "over_budget": 1, "duplicate": 1},
        today - timedelta(days=2): {"queued": 1},
    }
    chart = loop_page_devices(loop.pk, today).intake_chart
    assert chart["points"][-1] == {
        "day": today.isoformat(),
        "queued": 2,
        "over_budget": 1,
        "duplicate": 1,
        "stored": 0,
    }
    assert chart["names"]["queued"] == "hard, queued for labeling"


def test_per_device_volumes_are_the_devices_books(loop):
    device(loop, "gate-cam", seen_ago=timedelta(0), images=120, hard=7)
    device(loop, "yard-cam", seen_ago=timedelta(0), images=40, hard=2)
    chart = loop_page_devices(loop.pk).volumes_chart
    assert chart["kind"] == "bar" and chart["x"] == "device"
    assert chart["points"] == [
        {"device": "gate-cam", "images": 120, "hard": 7},
        {"device": "yard-cam", "images": 40, "hard": 2},
    ]


def test_the_home_card_shows_the_silent_device_alert_and_the_loop_page_its_devices(
    client, viewer_user, loop
):
    device(loop, "yard-cam", seen_ago=timedelta(hours=2))
    client.force_login(viewer_user)
    home = client.get("/").content.decode()
    card = home.split(f'data-testid="loop-card-{loop.pk}"')[1].split("</article>")[0]
    assert "1 device silent for more than 15 min: yard-cam (2" in card
    assert f"/edge/#fleet-loop-{loop.pk}" in card
    page = client.get(f"/loops/{loop.pk}/").content.decode()
    assert 'data-testid="loop-devices"' in page and "yard-cam" in page
