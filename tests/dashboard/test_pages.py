"""The pages' finish: fixes of wrong words and signs, confirm steps, links, filters, error pages."""

import pytest

from apps.jobs.models import Job
from apps.loops.models import Evaluation, Loop, ModelVersion
from apps.loops.training import eta_text
from bench.page_data import build
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def portal():
    return build(samples=600, versions=3, jobs=9)


def _regression_change(version, change: float):
    evaluation = version.evaluations.get(evaluation_set="regression")
    evaluation.baseline_metrics = {**evaluation.metrics, "mAP": evaluation.metrics["mAP"] - change}
    evaluation.save()


@pytest.mark.parametrize(
    "change, words",
    [(0.164, "no forgetting (mAP +0.164)"), (-0.05, "forgetting: mAP dropped 0.050")],
)
def test_the_regression_change_reads_with_the_right_sign(client, admin_user, portal, change, words):
    newest = portal.versions[-1]
    _regression_change(newest, change)
    client.force_login(admin_user)
    page = client.get(f"/loops/{portal.loop.pk}/v{newest.number}/").content.decode()
    assert words in page
    if change > 0:
        assert "forgetting: mAP dropped" not in page


def test_version_page_words_boxes_and_a_class_without_ground_truth(client, admin_user, portal):
    client.force_login(admin_user)
    newest = portal.versions[-1]
    evaluation = newest.evaluations.get(evaluation_set="edge")
    evaluation.metrics["per_class"]["helmet"]["ground_truth"] = 1
    evaluation.save()
    page = client.get(f"/loops/{portal.loop.pk}/v{newest.number}/").content.decode()
    assert "Trained from v2" in page and "Trained of" not in page
    assert "1 ground-truth box)" in page and "1 boxes" not in page
    # glove has no ground-truth boxes: its F1 is not a number, not 0.000
    assert "glove: F1 n/a (0 ground-truth boxes)" in page


def test_what_changed_counts_added_and_relabeled_samples_from_the_lineage(
    client, admin_user, portal
):
    client.force_login(admin_user)
    newest = portal.versions[-1]
    changes = client.get(f"/loops/{portal.loop.pk}/v{newest.number}/").context["changes"]
    # build(): the newest version adds 100 samples over its parent and trains on the second
    # revision of the relabeled samples that were in the train split.
    parent_samples = portal.versions[-2].trained_samples.values("sample_id")
    relabeled_in_train = newest.trained_samples.filter(
        annotation__revision=2, sample_id__in=parent_samples
    ).count()
    assert changes.added == 100
    assert changes.relabeled == relabeled_in_train > 0
    assert changes.removed == 0
    assert changes.trained == newest.trained_samples.count()


def test_compare_shows_both_versions_overall_and_per_class_with_the_yaml_diff(
    client, admin_user, portal
):
    client.force_login(admin_user)
    a, b = portal.versions[0], portal.versions[-1]
    response = client.get(f"/loops/{portal.loop.pk}/compare/?a={a.number}&b={b.number}")
    page = response.content.decode()
    edge = response.context["comparison"]["sets"][0]
    vest = next(row for row in edge.class_rows if row["name"] == "vest")
    assert f"{vest['f1_a']:.3f}" in page and f"{vest['f1_b']:.3f}" in page
    assert "learning_rate" in page and 'class="del"' in page  # hyperparameter and YAML diff
    assert client.get(f"/loops/{portal.loop.pk}/compare/?a=99&b=x").status_code == 200
    assert client.get(f"/loops/{portal.loop.pk}/compare/?a=%C2%B2").status_code == 200  # "²"


def test_deploy_and_rollback_ask_first_naming_both_versions(
    client, admin_user, portal, monkeypatch
):
    from apps.jobs import services as jobs

    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    client.force_login(admin_user)
    newest = portal.versions[-1]
    asked = client.post(f"/loops/{portal.loop.pk}/v{newest.number}/deploy/")
    assert asked.status_code == 200
    assert "Deploy v3 of big-loop-600? Devices get v3; v2 stops serving." in asked.content.decode()
    deploys = Job.objects.filter(kind="deploy", status="queued")
    assert not deploys.exists()
    done = client.post(f"/loops/{portal.loop.pk}/v{newest.number}/deploy/", {"confirmed": "yes"})
    assert done.status_code == 302
    assert deploys.get().params["version_id"] == newest.pk


def test_viewers_see_the_pages_without_any_action_button(client, viewer_user, portal):
    client.force_login(viewer_user)
    loop = portal.loop
    for url in (f"/loops/{loop.pk}/", f"/loops/{loop.pk}/v1/", f"/loops/{loop.pk}/v3/", "/"):
        page = client.get(url).content.decode()
        for action in ("/deploy/", "/rollback/", "/train/", "/evaluate/", "/delete/", "/force/"):
            assert action not in page, (url, action)
    assert client.post(f"/loops/{loop.pk}/v1/rollback/").status_code == 403


def test_jobs_list_filters_names_kinds_and_links_loop_and_version(client, admin_user, portal):
    client.force_login(admin_user)
    response = client.get("/jobs/?kind=dataset_import")
    page = response.content.decode()
    assert "Dataset import" in page and ">dataset_import<" not in page
    trains = client.get(f"/jobs/?kind=train&loop={portal.loop.pk}").context["page"]
    assert trains.paginator.count == 3 and all(job.kind == "train" for job in trains)
    job = trains[0]
    assert job.loop == portal.loop and job.version is not None
    detail = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/loops/{portal.loop.pk}/"' in detail
    assert f'href="/loops/{portal.loop.pk}/v{job.version.number}/"' in detail
    # and back: the version lists its jobs
    version_page = client.get(f"/loops/{portal.loop.pk}/v{job.version.number}/")
    assert client.get("/jobs/?status=nonsense&kind=nope&loop=x").status_code == 200
    assert version_page.status_code == 200


def test_a_skipped_training_shows_as_skipped_with_its_reason(client, admin_user):
    job = JobFactory(
        kind="train",
        status="succeeded",
        progress=100,
        result={"skipped": True, "reason": "The labeled data is unchanged since v3"},
    )
    client.force_login(admin_user)
    listing = client.get("/jobs/").content.decode()
    assert '<span class="status skipped"' in listing and "nothing to do" in listing
    detail = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Skipped:</strong> The labeled data is unchanged since v3" in detail
    assert '<span class="status succeeded"' not in detail


def test_the_result_is_a_table_with_the_json_behind_a_toggle(client, admin_user):
    job = JobFactory(
        status="succeeded",
        result={"checks": [{"name": "redis", "ok": True}, {"name": "db", "ok": False}], "n": 2},
    )
    client.force_login(admin_user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert (
        '<th scope="col">name</th>' in page and "<td>redis</td>" in page and "<td>no</td>" in page
    )
    assert "<summary>Result as JSON</summary>" in page


@pytest.mark.parametrize("url, status", [("/no/such/page/", 404), ("/loops/99999/", 404)])
def test_error_pages_render_inside_the_layout(client, admin_user, url, status):
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code == status
    page = response.content.decode()
    assert 'data-testid="error-page"' in page and 'class="topbar"' in page
    assert "Back to the overview" in page


def test_a_forbidden_page_says_why_inside_the_layout(client, viewer_user, portal):
    client.force_login(viewer_user)
    response = client.post(f"/loops/{portal.loop.pk}/train/")
    assert response.status_code == 403
    assert (
        "Only admins" in response.content.decode() and 'class="topbar"' in response.content.decode()
    )


def test_api_errors_stay_json(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and response.json()["detail"]


def test_a_server_error_renders_the_layout(rf, admin_user):
    from apps.dashboard.views import server_error

    request = rf.get("/")
    request.user = admin_user
    response = server_error(request)
    assert response.status_code == 500 and b"Something went wrong" in response.content


def test_the_home_page_shows_every_loop_with_its_deployed_version_and_alerts(
    client, admin_user, portal
):
    newest = portal.versions[-1]
    ModelVersion.objects.filter(pk=newest.pk).update(
        gate_passed=False, gate_reasons=[{"passed": False, "text": "f1 0.400 < 0.600"}]
    )
    failed = JobFactory(
        kind="evaluate", status="failed", scope=portal.loop.job_scope, message="out of memory"
    )
    running = JobFactory(kind="train", status="running", scope=portal.loop.job_scope, progress=40)
    client.force_login(admin_user)
    page = client.get("/").content.decode()
    assert f'data-testid="loop-card-{portal.loop.pk}"' in page
    assert 'data-testid="card-deployed">v2<' in page
    assert "v3 failed its gate: f1 0.400 &lt; 0.600" in page
    assert f"Evaluation job #{failed.pk} failed: out of memory" in page
    assert f'data-live-job="{running.pk}"' in page and 'aria-valuenow="40"' in page


def test_the_home_page_has_a_slot_for_other_apps_sections(
    client, admin_user, portal, tmp_path, settings
):
    from apps.dashboard import sections

    template_dir = tmp_path / "templates"
    (template_dir / "x").mkdir(parents=True)
    (template_dir / "x" / "_rules.html").write_text("<p>rule: {{ data.left }} labels to go</p>")
    engine = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**engine, "DIRS": [template_dir, *engine["DIRS"]]}]
    section = sections.LoopSection(
        name="test-rules",
        template="x/_rules.html",
        data_for_loops=lambda ids: {
            loop_id: {"left": 17, "alert": "rule stuck"} for loop_id in ids
        },
        alert=lambda data: data["alert"],
    )
    sections.register_loop_section(section)
    try:
        client.force_login(admin_user)
        page = client.get("/").content.decode()
        assert "rule: 17 labels to go" in page and "rule stuck" in page
        assert "rule: 17 labels to go" in client.get(f"/loops/{portal.loop.pk}/").content.decode()
    finally:
        sections._SECTIONS.pop("test-rules")


def test_the_eta_waits_until_it_means_something():
    assert eta_text(1, 100, 5.0) == ""
    assert eta_text(9, 100, 9.0) == ""
    assert eta_text(50, 100, 50.0) == " · about 50 s left"
    assert eta_text(500, 1000, 1800.0) == " · about 30 min left"
    assert eta_text(50, 1000, 100.0) == ""


def test_evaluations_keep_only_their_own_loop(portal):
    assert Evaluation.objects.filter(version__loop=portal.loop).count() == 6
    assert Loop.objects.count() == 1


def test_what_changed_is_kept_after_the_first_count_and_agrees_with_the_in_memory_count(portal):
    from apps.loops import overview, services

    newest = ModelVersion.objects.get(pk=portal.versions[-1].pk)
    counted = overview.what_changed(newest)
    newest.refresh_from_db()
    assert newest.train_summary["changes"]["added"] == counted.added
    in_memory = overview.changes_between(
        services.trained_pairs(newest.pk), services.trained_pairs(newest.parent_id)
    )
    assert in_memory == overview.count_changes(newest.pk, newest.parent_id)


def test_the_metrics_chart_follows_a_new_evaluation_and_a_deploy(client, admin_user, portal):
    client.force_login(admin_user)
    url = f"/loops/{portal.loop.pk}/"
    chart = client.get(url).context["chart"]
    assert chart["versions"] == ["v1", "v2", "v3"] and chart["deployed"] == "v2"
    newest = portal.versions[-1]
    edge = newest.evaluations.get(evaluation_set="edge")
    Evaluation.objects.create(
        version=newest,
        evaluation_set="edge",
        image_count=1,
        data_sha256="f" * 64,
        metrics={**edge.metrics, "mAP": 0.987654},
    )
    chart = client.get(url).context["chart"]
    assert chart["views"][0]["series"]["edge"][-1] == 0.9877
    Loop.objects.filter(pk=portal.loop.pk).update(deployed_version=newest)
    assert client.get(url).context["chart"]["deployed"] == "v3"
