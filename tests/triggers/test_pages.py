"""The rule pages: manage from the loop, form errors name the field, log and distance shown."""

from apps.jobs.models import Job
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import TriggerRule
from apps.triggers.services import create_rule
from tests.triggers.conftest import T0, label

FORM = {
    "name": "fifty labels",
    "kind": "sample_count",
    "action": "train",
    "enabled": "on",
    "every_unit": "minutes",
    "time_zone": "UTC",
    "min_samples": "50",
    "cooldown_minutes": "0",
    "dry_run_days": "7",
}


def test_create_from_the_form_and_see_distance_on_the_loop_page(client_for, admin_user, loop):
    client = client_for(admin_user)
    response = client.post(f"/triggers/loop/{loop.pk}/new/", FORM)
    rule = TriggerRule.objects.get()
    assert response.status_code == 302 and response.url == f"/triggers/{rule.pk}/"
    label(loop, 37)
    page = client.get(f"/loops/{loop.pk}/").content.decode()
    assert "37 of 50 labels" in page and "Manage rules" in page
    settings_page = client.get(f"/loops/{loop.pk}/settings/").content.decode()
    assert f"/triggers/loop/{loop.pk}/" in settings_page


def test_form_errors_name_the_field_and_save_nothing(client_for, admin_user, loop):
    client = client_for(admin_user)
    page = client.post(
        f"/triggers/loop/{loop.pk}/new/",
        {**FORM, "kind": "time", "cron": "0 99 * * *", "time_zone": "Atlantis/Deep"},
    ).content.decode()
    assert 'data-testid="error-cron"' in page and 'data-testid="error-time_zone"' in page
    assert not TriggerRule.objects.exists()


def test_the_form_refuses_a_random_cron_with_the_api_s_message(client_for, admin_user, loop):
    client = client_for(admin_user)
    page = client.post(
        f"/triggers/loop/{loop.pk}/new/", {**FORM, "kind": "time", "cron": "R R * * *"}
    ).content.decode()
    assert 'data-testid="error-cron"' in page and "random (R)" in page
    assert not TriggerRule.objects.exists()


def test_dry_run_from_the_form(client_for, admin_user, loop):
    client = client_for(admin_user)
    label(loop, 3)
    page = client.post(
        f"/triggers/loop/{loop.pk}/new/", {**FORM, "min_samples": "2", "dry_run": "1"}
    ).content.decode()
    assert "Dry run: 1 firing" in page and "3 of 2 labels" not in page
    assert not TriggerRule.objects.exists()


def test_rule_page_shows_log_and_fires(client_for, admin_user, viewer_user, loop):
    rule = create_rule(loop, {"name": "n", "kind": "sample_count", "min_samples": 2})
    label(loop, 1)
    evaluate_rule(rule.pk, now=T0)
    viewer = client_for(viewer_user)
    page = viewer.get(f"/triggers/{rule.pk}/").content.decode()
    assert "1 of 2 new labels" in page and "Fire now" not in page
    assert viewer.post(f"/triggers/{rule.pk}/fire/").status_code == 403
    admin = client_for(admin_user)
    assert admin.post(f"/triggers/{rule.pk}/fire/").status_code == 302
    assert Job.objects.get().kind == "train"
    page = admin.get(f"/triggers/{rule.pk}/").content.decode()
    assert "Fired by hand by alice-admin" in page and "Fire now" in page
    admin.post(f"/triggers/{rule.pk}/toggle/")
    assert TriggerRule.objects.get().enabled is False
