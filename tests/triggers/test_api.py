"""The REST API: CRUD, fire, dry run and log, with the form's validation and the roles."""

import pytest

from apps.jobs.models import Job
from apps.triggers.models import TriggerRule
from tests.triggers.conftest import label


@pytest.fixture
def api(client_for, admin_user):
    return client_for(admin_user)


def rules_url(loop):
    return f"/api/v1/loops/{loop.pk}/trigger-rules/"


def test_create_read_update_delete(api, loop):
    created = api.post(
        rules_url(loop),
        {"name": "nightly", "kind": "time", "cron": "0 2 * * *", "time_zone": "Europe/Berlin"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["cron"] == "0 2 * * *" and body["distance_to_firing"].startswith("next at ")
    rule_url = f"/api/v1/trigger-rules/{body['id']}/"
    listed = api.get(rules_url(loop)).json()
    assert [r["name"] for r in listed] == ["nightly"]
    patched = api.patch(
        rule_url,
        {"window_start": "23:00", "window_end": "02:30", "cooldown_minutes": 30},
        content_type="application/json",
    )
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["window_start"], patched.json()["window_end"]) == ("23:00", "02:30")
    never = api.patch(
        rule_url, {"window_start": "22:00", "window_end": "02:00"}, content_type="application/json"
    )
    assert never.status_code == 400 and "never fire" in never.json()["window_start"][0]
    assert api.delete(rule_url).status_code == 204
    assert not TriggerRule.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "kind": "time", "cron": "0 0 31 2 7 7"}, "cron"),
        ({"name": "x", "kind": "time", "every": -1}, "every"),
        ({"name": "x", "kind": "time", "every": "often"}, "every"),
        ({"name": "x", "kind": "time", "every": 5, "time_zone": "Nowhere/Else"}, "time_zone"),
        (
            {
                "name": "x",
                "kind": "time",
                "every": 5,
                "window_start": "03:00",
                "window_end": "03:00",
            },
            "window_end",
        ),
        ({"name": "x", "kind": "time", "every": 5, "window_start": "25:00"}, "window_start"),
        (
            {"name": "x", "kind": "sample_count", "min_samples": 5, "class_name": "cat"},
            "class_name",
        ),
        (
            {
                "name": "x",
                "kind": "precision",
                "metric": "f1",
                "comparison": "below",
                "threshold": 7,
                "min_fresh_samples": 5,
            },
            "threshold",
        ),
        ({"kind": "time", "every": 5}, "name"),
        ({"name": "x", "kind": "time", "cron": "R R * * *"}, "cron"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, loop, payload, field):
    response = api.post(rules_url(loop), payload, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not TriggerRule.objects.exists()


def test_a_bad_patch_changes_nothing(api, loop):
    rule = api.post(
        rules_url(loop),
        {"name": "n", "kind": "sample_count", "min_samples": 5},
        content_type="application/json",
    ).json()
    response = api.patch(
        f"/api/v1/trigger-rules/{rule['id']}/",
        {"min_samples": 0, "name": "renamed"},
        content_type="application/json",
    )
    assert response.status_code == 400 and "min_samples" in response.json()
    assert TriggerRule.objects.get().name == "n"


def test_fire_and_log(api, loop):
    rule = api.post(
        rules_url(loop),
        {"name": "n", "kind": "sample_count", "min_samples": 500},
        content_type="application/json",
    ).json()
    fired = api.post(f"/api/v1/trigger-rules/{rule['id']}/fire/")
    assert fired.status_code == 201 and fired.json()["verdict"] == "fired"
    assert Job.objects.get().kind == "train"
    again = api.post(f"/api/v1/trigger-rules/{rule['id']}/fire/")
    assert again.status_code == 409 and again.json()["reason"] == "job_running"
    log = api.get(f"/api/v1/trigger-rules/{rule['id']}/decisions/?limit=1").json()
    assert [d["reason"] for d in log["results"]] == ["job_running"]
    assert log["next_before"] is not None
    for query, field in (("limit=x", "limit"), ("limit=-1", "limit"), ("before=-5", "before")):
        bad = api.get(f"/api/v1/trigger-rules/{rule['id']}/decisions/?{query}")
        assert bad.status_code == 400 and field in bad.json(), query


def test_dry_run_saves_nothing(api, loop):
    label(loop, 3)
    response = api.post(
        f"{rules_url(loop)}dry-run/",
        {"name": "draft", "kind": "sample_count", "min_samples": 2, "days": 1},
        content_type="application/json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["would_fire"] == 1
    assert not TriggerRule.objects.exists()
    bad = api.post(
        f"{rules_url(loop)}dry-run/",
        {"name": "draft", "kind": "sample_count", "min_samples": 2, "days": 0},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "days" in bad.json()


def test_viewers_read_admins_change(client_for, viewer_user, labeler_user, loop, admin_user):
    from apps.triggers.services import create_rule

    rule = create_rule(loop, {"name": "n", "kind": "time", "every": 5})
    viewer = client_for(viewer_user)
    assert viewer.get(rules_url(loop)).status_code == 200
    assert viewer.get(f"/api/v1/trigger-rules/{rule.pk}/decisions/").status_code == 200
    assert viewer.post(f"/api/v1/trigger-rules/{rule.pk}/fire/").status_code == 403
    assert (
        viewer.patch(
            f"/api/v1/trigger-rules/{rule.pk}/", {"every": 1}, content_type="application/json"
        ).status_code
        == 403
    )
    assert viewer.delete(f"/api/v1/trigger-rules/{rule.pk}/").status_code == 403
    labeler = client_for(labeler_user)
    assert labeler.post(rules_url(loop), {}, content_type="application/json").status_code == 403
    assert not Job.objects.exists()


def test_anonymous_and_devices_are_refused(client, loop):
    assert client.get(rules_url(loop)).status_code == 401


def test_schema_lists_the_paths(api):
    schema = api.get("/api/v1/schema/?format=json").json()
    assert "/api/v1/trigger-rules/{rule_id}/fire/" in schema["paths"]
