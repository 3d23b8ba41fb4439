"""REST API v1 for loops: reads per role and device scope, the verbs through the buttons'
services (202 with the job, 409 naming the job in the way, 400 with the reason), settings."""

import json
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from apps.accounts.services import create_device_token
from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.loops import services
from apps.loops.models import (
    Evaluation,
    Loop,
    ModelVersion,
    Stage,
    TrainedSample,
    VersionSource,
)
from tests.factories import DatasetFactory, UserFactory, make_sample
from tests.loops.conftest import tiny_yaml

pytestmark = pytest.mark.django_db

METRICS = {"mAP": 0.41, "f1": 0.62, "per_class": {"helmet": {"f1": 0.7}}}


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


@pytest.fixture
def loop(admin_user):
    dataset = DatasetFactory(name="site-a")
    return services.create_loop(
        name="line-3", dataset=dataset, algorithm_yaml=tiny_yaml(), user=admin_user
    )


def add_version(loop, number, *, stage=Stage.CANDIDATE, gate_passed=None, parent=None, **extra):
    """A version row without training (the verbs only look at the registry)."""
    return ModelVersion.objects.create(
        loop=loop,
        number=number,
        source=extra.pop("source", VersionSource.TRAINED),
        parent=parent,
        artifact=f"models/loop-{loop.pk}/v{number}-model.zip",
        artifact_sha256=f"{number:064x}",
        artifact_size=1000 + number,
        class_names=loop.dataset.class_names,
        stage=stage,
        gate_passed=gate_passed,
        gate_reasons=[{"passed": bool(gate_passed), "text": f"f1 gate of v{number}"}]
        if gate_passed is not None
        else [],
        **extra,
    )


def deploy_now(version, action="deploy"):
    return services.move_deployed_pointer(
        version.pk, action=action, started_by="test", reason="", job_id=None
    )


@pytest.fixture
def history(loop):
    """v1 deployed then replaced by v2 (deployed); v3 a candidate that failed its gate."""
    v1 = add_version(loop, 1, gate_passed=True)
    deploy_now(v1)
    v2 = add_version(loop, 2, gate_passed=True, parent=v1, new_samples=3, replay_samples=2)
    deploy_now(v2)
    v3 = add_version(loop, 3, gate_passed=False, parent=v2)
    for version in (v2, v3):
        Evaluation.objects.create(
            version=version,
            evaluation_set="edge",
            image_count=6,
            data_sha256="e" * 64,
            metrics=METRICS,
            baseline=v1,
            baseline_metrics={**METRICS, "f1": 0.5},
        )
    return {1: v1, 2: v2, 3: v3}


def scoped_device(loop=None, *, all_loops=False):
    issued = create_device_token(name="edge-cam", created_by=None)
    token = issued.device_token
    token.all_loops = all_loops
    token.save()
    if loop is not None:
        token.loops.add(loop)
    client = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    client.token = token
    return client


def read_urls(loop, number=1):
    return [
        reverse("api-loops"),
        reverse("api-loop", args=[loop.pk]),
        reverse("api-versions", args=[loop.pk]),
        reverse("api-version", args=[loop.pk, number]),
        reverse("api-evaluations", args=[loop.pk]),
        reverse("api-deployments", args=[loop.pk]),
    ]


def verb_urls(loop, number=3):
    version = [loop.pk, number]
    return [
        reverse("api-loop-train", args=[loop.pk]),
        reverse("api-version-evaluate", args=version),
        reverse("api-version-deploy", args=version),
        reverse("api-version-rollback", args=version),
        reverse("api-version-force", args=version),
    ]


# --- Who may read ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "labeler", "viewer"])
def test_every_role_reads_loops_versions_evaluations_and_deployments(client, history, role):
    client.force_login(UserFactory(role=role))
    loop = history[1].loop
    for url in read_urls(loop):
        response = client.get(url)
        assert response.status_code == 200, (url, response.content)
    listed = client.get(reverse("api-loops")).json()
    assert [item["name"] for item in listed["results"]] == ["line-3"]
    assert listed["results"][0]["deployed_version"] == {
        "id": history[2].pk,
        "number": 2,
        "label": "v2",
    }


def test_anonymous_gets_401_json_everywhere(history):
    anonymous = Client()
    loop = history[1].loop
    for url in read_urls(loop):
        response = anonymous.get(url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == "Bearer"
        assert "detail" in response.json()
    for url in verb_urls(loop):
        assert anonymous.post(url).status_code == 401, url
    assert not Job.objects.exists()


@pytest.mark.parametrize("role", ["labeler", "viewer"])
def test_labelers_and_viewers_may_not_act(client, history, role):
    client.force_login(UserFactory(role=role))
    loop = history[1].loop
    for url in verb_urls(loop):
        response = client.post(url, {"reason": "because"}, content_type="application/json")
        assert response.status_code == 403, url
        assert response.json()["detail"] == "Your role may not do this."
    created = client.post(
        reverse("api-loops"),
        {"name": "other", "dataset": loop.dataset_id},
        content_type="application/json",
    )
    changed = client.patch(
        reverse("api-loop", args=[loop.pk]), {"auto_deploy": False}, content_type="application/json"
    )
    assert (created.status_code, changed.status_code) == (403, 403)
    assert not Job.objects.exists() and Loop.objects.get().auto_deploy is True


def test_a_device_reads_only_the_loops_in_its_scope(history):
    loop = history[1].loop
    other = services.create_loop(name="yard", dataset=DatasetFactory(name="yard"))
    device = scoped_device(loop)
    for url in read_urls(loop):
        assert device.get(url).status_code == 200, url
    assert [item["id"] for item in device.get(reverse("api-loops")).json()["results"]] == [loop.pk]
    for url in read_urls(other)[1:]:
        if "versions/1/" in url:
            continue  # the other loop has no v1: 404 before the scope matters
        response = device.get(url)
        assert response.status_code == 403, url
        assert "not scoped to loop 'yard'" in response.json()["detail"]
    unscoped = scoped_device(all_loops=True)
    assert len(unscoped.get(reverse("api-loops")).json()["results"]) == 2
    nothing = scoped_device()
    assert nothing.get(reverse("api-loops")).json()["results"] == []


def test_a_device_may_not_act_on_a_loop_even_in_scope(history):
    device = scoped_device(history[1].loop)
    for url in verb_urls(history[1].loop):
        assert device.post(url, {"reason": "x"}).status_code == 403, url
    assert device.patch(reverse("api-loop", args=[history[1].loop.pk]), {}).status_code == 403
    assert not Job.objects.exists()


# --- What a version says -----------------------------------------------------------------------


def test_a_version_shows_metrics_gate_verdict_stage_and_lineage(client, viewer_user, history):
    v2 = history[2]
    boxes = [("helmet", 1, 1, 9, 9)]
    samples = [make_sample(v2.loop.dataset, seed, boxes=boxes) for seed in (1, 2)]
    TrainedSample.objects.bulk_create(
        TrainedSample(version=v2, sample=s, annotation_id=s.current_annotation_id) for s in samples
    )
    client.force_login(viewer_user)
    body = client.get(reverse("api-version", args=[v2.loop_id, 2])).json()
    assert body["stage"] == "deployed" and body["gate_passed"] is True
    assert body["gate_reasons"] == [{"passed": True, "text": "f1 gate of v2"}]
    assert body["metrics"] == {"edge": METRICS}
    assert body["evaluations"][0]["baseline"] == 1
    assert body["evaluations"][0]["f1_change"] == pytest.approx(0.12)
    assert body["lineage"] == {
        "parent": 1,
        "train_job": None,
        "trained_samples": 2,
        "new_samples": 3,
        "replay_samples": 2,
        "snapshot_sha256": "",
    }
    assert body["archive_url"] == f"/loops/{v2.loop_id}/v2/download/archive/"
    assert body["litert_url"] is None
    v3 = client.get(reverse("api-version", args=[v2.loop_id, 3])).json()
    assert v3["gate_passed"] is False and v3["gate_failures"] == ["f1 gate of v3"]
    assert v3["stage"] == "candidate"
    uploaded = add_version(v2.loop, 4, source=VersionSource.UPLOADED)
    lineage = client.get(reverse("api-version", args=[v2.loop_id, uploaded.number])).json()
    assert lineage["lineage"]["new_samples"] is None and lineage["lineage"]["parent"] is None


def test_deployments_and_evaluations_list_newest_first(client, viewer_user, history):
    client.force_login(viewer_user)
    loop = history[1].loop
    moves = client.get(reverse("api-deployments", args=[loop.pk])).json()["results"]
    assert [(m["action"], m["version"], m["previous"]) for m in moves] == [
        ("deploy", 2, 1),
        ("deploy", 1, None),
    ]
    url = reverse("api-evaluations", args=[loop.pk])
    assert [e["version"] for e in client.get(url).json()["results"]] == [3, 2]
    assert [e["version"] for e in client.get(url, {"version": 2}).json()["results"]] == [2]
    assert client.get(url, {"set": "regression"}).json()["results"] == []
    bad = client.get(url, {"set": "moon"})
    assert bad.status_code == 400 and "set must be one of" in bad.json()["detail"]
    assert [e["version"] for e in client.get(url, {"set": ""}).json()["results"]] == [3, 2]
    empty = client.get(url, {"version": ""})
    assert empty.status_code == 400 and "version must be an integer" in empty.json()["detail"]


def test_versions_page_with_a_keyset_cursor_and_a_stage_filter(client, viewer_user, history):
    client.force_login(viewer_user)
    url = reverse("api-versions", args=[history[1].loop_id])
    first = client.get(url, {"limit": 2}).json()
    assert [v["number"] for v in first["results"]] == [3, 2]
    second = client.get(url, {"limit": 2, "after": first["next_after"]}).json()
    assert [v["number"] for v in second["results"]] == [1] and second["next_after"] is None
    archived = client.get(url, {"stage": "archived"}).json()["results"]
    assert [v["number"] for v in archived] == [1]
    assert client.get(url, {"after": "soon"}).status_code == 400
    assert client.get(url, {"after": ""}).status_code == 400
    assert len(client.get(url, {"stage": ""}).json()["results"]) == 3  # empty: any stage
    assert client.get(url, {"limit": "many"}).json() == {"detail": "limit must be an integer."}


def test_unknown_loops_and_versions_are_404_json(client, viewer_user, history):
    client.force_login(viewer_user)
    loop_id = history[1].loop_id
    for url, message in (
        (reverse("api-loop", args=[9999]), "No loop #9999."),
        (reverse("api-version", args=[loop_id, 99]), "Loop 'line-3' has no version v99."),
        (reverse("api-versions", args=[9999]), "No loop #9999."),
        (reverse("api-deployments", args=[10**30]), f"No loop #{10**30}."),
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": message}


# --- The verbs ---------------------------------------------------------------------------------


def test_train_starts_a_job_and_a_second_train_is_409_naming_it(client, admin_user, loop):
    client.force_login(admin_user)
    url = reverse("api-loop-train", args=[loop.pk])
    started = client.post(url)
    assert started.status_code == 202, started.content
    job = Job.objects.get()
    assert (job.kind, job.scope, job.params, job.status) == (
        "train",
        loop.job_scope,
        {"loop_id": loop.pk},
        JobStatus.QUEUED,
    )
    assert (job.started_by, job.trigger) == ("user:alice-admin", "api")
    assert started.json()["id"] == job.pk and started.json()["api_url"] == f"/api/v1/jobs/{job.pk}/"
    again = client.post(url)
    assert again.status_code == 409
    body = again.json()
    assert body["detail"] == f"train job #{job.pk} is already queued for loop:{loop.pk}."
    assert (body["job"]["id"], body["job"]["kind"], body["job"]["url"]) == (
        job.pk,
        "train",
        f"/jobs/{job.pk}/",
    )
    assert Job.objects.count() == 1


def test_evaluate_then_deploy_a_version_that_passed(client, admin_user, loop):
    client.force_login(admin_user)
    add_version(loop, 1, gate_passed=True)
    evaluated = client.post(reverse("api-version-evaluate", args=[loop.pk, 1]))
    assert evaluated.status_code == 202
    deployed = client.post(reverse("api-version-deploy", args=[loop.pk, 1]))
    assert deployed.status_code == 202, deployed.content
    job = Job.objects.get(kind="deploy")
    assert job.params == {
        "loop_id": loop.pk,
        "version_id": ModelVersion.objects.get().pk,
        "action": "deploy",
        "reason": "",
    }
    assert Job.objects.get(kind="evaluate").params["version_id"] == job.params["version_id"]
    assert set(Job.objects.values_list("trigger", flat=True)) == {"api"}


def test_deploying_a_version_that_failed_its_gate_is_400_with_the_reasons(
    client, admin_user, history
):
    client.force_login(admin_user)
    response = client.post(reverse("api-version-deploy", args=[history[3].loop_id, 3]))
    assert response.status_code == 400
    assert response.json() == {
        "detail": "v3 has not passed its gate: f1 gate of v3. "
        "Evaluate it, or force the deploy with a reason."
    }
    again = client.post(reverse("api-version-deploy", args=[history[2].loop_id, 2]))
    assert again.json()["detail"] == "v2 is already deployed."
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)  # the job runner closes its connection, as a worker does
def test_a_deploy_whose_gate_failed_while_it_was_queued_deploys_nothing(
    client, admin_user, history
):
    """The deploy job asks again what the button asked: an evaluation that failed the version's
    gate while the job waited in its queue leaves the pointer and the deployments as they were."""
    from apps.jobs.runner import run_job
    from apps.loops.deployment import run_deploy

    client.force_login(admin_user)
    v3 = history[3]
    ModelVersion.objects.filter(pk=v3.pk).update(gate_passed=True)
    started = client.post(reverse("api-version-deploy", args=[v3.loop_id, 3]))
    assert started.status_code == 202
    ModelVersion.objects.filter(pk=v3.pk).update(
        gate_passed=False, gate_reasons=[{"passed": False, "text": "Δf1 -0.100 < +0.010"}]
    )

    assert run_job(started.json()["id"], "w1", run_deploy) == JobStatus.FAILED
    job = Job.objects.get(pk=started.json()["id"])
    assert "v3 has not passed its gate: Δf1 -0.100 < +0.010" in job.message
    loop = Loop.objects.get(pk=v3.loop_id)
    assert loop.deployed_version_id == history[2].pk
    assert loop.deployments.count() == 2 and not loop.deployments.filter(version=v3).exists()
    assert ModelVersion.objects.get(pk=v3.pk).stage == Stage.CANDIDATE


def test_force_needs_a_written_reason(client, admin_user, history):
    client.force_login(admin_user)
    url = reverse("api-version-force", args=[history[3].loop_id, 3])
    for body in ({}, {"reason": "   "}):
        refused = client.post(url, body, content_type="application/json")
        assert refused.status_code == 400
        assert refused.json() == {"detail": "A forced deploy needs a written reason."}
    huge = client.post(url, {"reason": "é" * 2001}, content_type="application/json")
    assert huge.json() == {"detail": "A reason of at most 2,000 characters, please."}
    assert not Job.objects.exists()
    reason = {"reason": "line 3 needs it tonight"}
    forced = client.post(url, reason, content_type="application/json")
    assert forced.status_code == 202
    job = Job.objects.get()
    assert (job.params["action"], job.params["reason"]) == ("force", "line 3 needs it tonight")


def test_only_a_role_with_force_deploy_may_force(client, history):
    """operate_loop without force_deploy: the service refuses, as it does for the button."""
    from django.contrib.auth.models import Permission

    operator = UserFactory(role="viewer")
    operator.user_permissions.add(Permission.objects.get(codename="operate_loop"))
    client.force_login(operator)
    url = reverse("api-version-force", args=[history[3].loop_id, 3])
    refused = client.post(url, {"reason": "please"}, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Only admins may force a deploy."}


def test_rollback_to_a_never_deployed_version_is_refused(client, admin_user, history):
    client.force_login(admin_user)
    loop_id = history[1].loop_id
    refused = client.post(reverse("api-version-rollback", args=[loop_id, 3]))
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "v3 was never deployed: roll back to an earlier version.",
    }
    assert not Job.objects.exists()
    rolled = client.post(
        reverse("api-version-rollback", args=[loop_id, 1]),
        {"reason": "v2 misses cones"},
        content_type="application/json",
    )
    assert rolled.status_code == 202
    assert Job.objects.get().params["action"] == "rollback"


def test_a_rollback_while_a_deploy_runs_is_409_naming_the_deploy(client, admin_user, history):
    client.force_login(admin_user)
    loop_id = history[1].loop_id
    running = services.start_deploy(history[3], user=admin_user, action="force", reason="test")
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    response = client.post(reverse("api-version-rollback", args=[loop_id, 1]))
    assert response.status_code == 409
    assert response.json()["job"]["id"] == running.pk
    assert response.json()["job"]["kind"] == "deploy"
    assert f"#{running.pk}" in response.json()["detail"]


def test_verbs_on_unknown_versions_are_404(client, admin_user, loop):
    client.force_login(admin_user)
    for url in verb_urls(loop, number=42)[1:]:
        assert client.post(url).status_code == 404, url
    assert client.post(reverse("api-loop-train", args=[9999])).status_code == 404


# --- Creating and changing a loop -------------------------------------------------------------


def test_an_admin_creates_a_loop_with_the_forms_defaults(client, admin_user):
    client.force_login(admin_user)
    dataset = DatasetFactory(name="yard")
    response = client.post(
        reverse("api-loops"),
        {"name": "yard-loop", "dataset": dataset.pk},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["gate_min_metrics"] == {"f1": 0.5} and body["gate_min_gain"] == {"f1": 0.01}
    assert body["gate_max_forgetting"] == 0.02 and body["gate_min_edge_images"] == 1
    assert body["auto_evaluate"] is True and body["auto_deploy"] is True
    assert 'class_names: ["helmet", "vest", "cone"]' in body["algorithm_yaml"]
    assert body["created_by"] == "alice-admin" and body["deployed_version"] is None
    assert not Job.objects.exists()  # training starts when asked


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algorithm_yaml": "basemodel: {name: NoSuchModel}"}, "NoSuchModel"),
        ({"algorithm_yaml": "just: [unbalanced"}, "Algorithm YAML"),
        ({"algorithm_yaml": "basemodel: {name: FPN}\n#" + "x" * 2**20}, "at most 65,536"),
        ({"algorithm_yaml": "basemodel: {name: FPN}\nbasemodel: {name: FPN}"}, "twice"),
        (
            {"algorithm_yaml": "basemodel:\n  name: FPN\n  hyperparameters: {class_names: [a]}"},
            "differ from the dataset's",
        ),
        ({"gate_min_metrics": {"accuracy": 0.5}}, "unknown metric 'accuracy'"),
        ({"gate_min_metrics": {"f1": 3}}, "gate_min_metrics: f1: Ensure this value"),
        ({"gate_min_metrics": {"f1": "high"}}, "A valid number is required"),
        ({"gate_per_class_gain": True, "gate_min_gain": {"mAP": 0.1}}, "per-class gains"),
        ({"gate_max_forgetting": -0.5}, "gate_max_forgetting"),
        ({"gate_min_edge_images": 0}, "gate_min_edge_images"),
        ({"gate_min_edge_images": "many"}, "gate_min_edge_images"),
        ({"name": ""}, "name: This field may not be blank."),
        ({"name": "line-3"}, "already exists"),
        ({"dataset": 9999}, "dataset: Invalid pk"),
    ],
)
def test_a_bad_loop_is_400_with_the_reason_and_nothing_is_created(
    client, admin_user, loop, change, message
):
    client.force_login(admin_user)
    body = {"name": "second", "dataset": loop.dataset_id, **change}
    response = client.post(reverse("api-loops"), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert list(Loop.objects.values_list("name", flat=True)) == ["line-3"]


@pytest.mark.django_db(transaction=True)
def test_two_creates_with_one_name_at_once_give_one_loop_and_a_400(client, admin_user):
    """The second request passed the name check while the first one's row was not committed
    yet; the unique index refuses it, and that is a 400 naming the loop, not a 500."""
    dataset = DatasetFactory(name="site-b")
    created, done = threading.Event(), threading.Event()

    def first():
        try:
            with transaction.atomic():
                services.create_loop(name="twin", dataset=dataset)
                created.set()
                time.sleep(1)  # the second request now waits on the unique index (PostgreSQL)
        finally:
            done.set()
            connection.close()

    threading.Thread(target=first).start()
    assert created.wait(10)
    client.force_login(admin_user)
    second = client.post(
        reverse("api-loops"),
        {"name": "twin", "dataset": dataset.pk},
        content_type="application/json",
    )
    assert done.wait(10)
    assert second.status_code == 400, second.content
    assert second.json() == {"detail": "A loop named 'twin' already exists."}
    assert Loop.objects.filter(name="twin").count() == 1


def test_a_dataset_without_classes_cannot_have_a_loop(client, admin_user):
    client.force_login(admin_user)
    dataset = DatasetFactory(name="empty", class_names=[])
    response = client.post(
        reverse("api-loops"), {"name": "x", "dataset": dataset.pk}, content_type="application/json"
    )
    assert response.status_code == 400 and "has no classes yet" in response.json()["detail"]


def test_an_admin_changes_the_settings_and_bad_ones_change_nothing(client, admin_user, loop):
    client.force_login(admin_user)
    url = reverse("api-loop", args=[loop.pk])
    changed = client.patch(
        url,
        {
            "gate_min_gain": {"f1": 0.05, "mAP": 0.01},
            "auto_deploy": False,
            "description": "north",
            "gate_min_edge_images": 30,
        },
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["gate_min_edge_images"] == 30
    loop.refresh_from_db()
    assert loop.gate_min_gain == {"f1": 0.05, "mAP": 0.01} and loop.auto_deploy is False
    assert loop.algorithm_yaml == tiny_yaml().strip() and loop.description == "north"
    for bad in (
        {"algorithm_yaml": "basemodel: {name: NoSuchModel}", "auto_evaluate": False},
        {"algorithm_yaml": tiny_yaml() + "#" * 70_000, "auto_evaluate": False},
        {"gate_min_metrics": {"nope": 1}, "auto_evaluate": False},
        {"dataset": 3},
        {"name": "renamed"},
        ["not", "an", "object"],
    ):
        response = client.patch(url, bad, content_type="application/json")
        assert response.status_code == 400, (bad, response.content)
        assert response.json()["detail"]
    loop.refresh_from_db()
    assert loop.auto_evaluate is True and loop.name == "line-3"
    assert loop.algorithm_yaml == tiny_yaml().strip()
    broken = client.patch(url, "{not json", content_type="application/json")
    assert broken.status_code == 400 and "JSON parse error" in broken.json()["detail"]


def test_a_yaml_may_import_only_the_operators_plugin_modules(
    client, admin_user, loop, settings, tmp_path
):
    """A plugin is imported (its code runs) in the web process and every worker: a YAML from the
    API may name only the modules listed in ALGORITHM_PLUGINS, and nothing else is imported."""
    client.force_login(admin_user)
    url = reverse("api-loop", args=[loop.pk])
    ran = tmp_path / "ran"
    plugin = tmp_path / "side_effect.py"
    plugin.write_text(f"open({str(ran)!r}, 'w').close()\n")
    for module in (str(plugin), "antigravity", "/etc/passwd"):
        text = f"{tiny_yaml().strip()}\nplugins: [{module}]"
        response = client.patch(url, {"algorithm_yaml": text}, content_type="application/json")
        assert response.status_code == 400, (module, response.content)
        assert "is not an allowed plugin module" in response.json()["detail"]
    assert not ran.exists()
    loop.refresh_from_db()
    assert loop.algorithm_yaml == tiny_yaml().strip()
    settings.ALGORITHM_PLUGINS = [str(plugin)]
    text = f"{tiny_yaml().strip()}\nplugins: [{plugin}]"
    response = client.patch(url, {"algorithm_yaml": text}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert ran.exists()


def test_the_loop_shows_its_active_jobs(client, viewer_user, loop):
    job = services.start_training(loop, user=None)
    client.force_login(viewer_user)
    body = client.get(reverse("api-loop", args=[loop.pk])).json()
    assert body["active_jobs"] == [
        {"id": job.pk, "kind": "train", "status": "queued", "progress": 0}
    ]


# --- Cost ----------------------------------------------------------------------------------------


def _fill(loop, versions: int):
    previous = None
    for number in range(1, versions + 1):
        version = add_version(loop, number, gate_passed=True, parent=previous)
        deploy_now(version)
        for evaluation_set in ("edge", "regression"):
            Evaluation.objects.create(
                version=version,
                evaluation_set=evaluation_set,
                image_count=3,
                data_sha256="a" * 64,
                metrics=METRICS,
                baseline=previous,
                baseline_metrics=METRICS if previous else None,
            )
        previous = version
    services.start_training(loop)


def _queries_for(client, url, django_assert_max_num_queries, limit) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    with django_assert_max_num_queries(limit):
        client.get(url)
    return len(captured)


def test_query_counts_do_not_grow_with_the_rows(client, viewer_user, django_assert_max_num_queries):
    client.force_login(viewer_user)
    small = services.create_loop(name="small", dataset=DatasetFactory(name="s"))
    big = services.create_loop(name="big", dataset=DatasetFactory(name="b"))
    _fill(small, 1)
    _fill(big, 12)
    for name in ("api-versions", "api-evaluations", "api-deployments", "api-loop"):
        few = _queries_for(client, reverse(name, args=[small.pk]), django_assert_max_num_queries, 9)
        many = _queries_for(client, reverse(name, args=[big.pk]), django_assert_max_num_queries, 9)
        assert few == many, name
    one_loop = _queries_for(client, reverse("api-loops"), django_assert_max_num_queries, 9)
    for index in range(6):
        _fill(services.create_loop(name=f"more-{index}", dataset=DatasetFactory()), 2)
    assert _queries_for(client, reverse("api-loops"), django_assert_max_num_queries, 9) == one_loop


def test_a_device_costs_a_constant_number_of_queries_too(django_assert_max_num_queries, loop):
    _fill(loop, 5)
    device = scoped_device(loop)
    with django_assert_max_num_queries(8):
        assert device.get(reverse("api-versions", args=[loop.pk])).status_code == 200


# --- Schema -------------------------------------------------------------------------------------


def test_the_schema_documents_every_loops_operation_and_its_errors(client):
    schema = json.loads(client.get(reverse("api-schema"), {"format": "json"}).content)
    paths = schema["paths"]
    expected = {
        "/api/v1/loops/": {"get", "post"},
        "/api/v1/loops/{loop_id}/": {"get", "patch"},
        "/api/v1/loops/{loop_id}/train/": {"post"},
        "/api/v1/loops/{loop_id}/versions/": {"get"},
        "/api/v1/loops/{loop_id}/versions/{number}/": {"get"},
        "/api/v1/loops/{loop_id}/versions/{number}/evaluate/": {"post"},
        "/api/v1/loops/{loop_id}/versions/{number}/deploy/": {"post"},
        "/api/v1/loops/{loop_id}/versions/{number}/rollback/": {"post"},
        "/api/v1/loops/{loop_id}/versions/{number}/force/": {"post"},
        "/api/v1/loops/{loop_id}/evaluations/": {"get"},
        "/api/v1/loops/{loop_id}/deployments/": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, set(paths[path]))
    train = paths["/api/v1/loops/{loop_id}/train/"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "409"} <= set(train)
    loop_id = paths["/api/v1/loops/{loop_id}/train/"]["post"]["parameters"][0]
    assert loop_id["schema"] == {"type": "integer", "minimum": 0}  # Django's <int:> is [0-9]+
    version = schema["components"]["schemas"]["Version"]["properties"]
    assert version["gate_passed"]["nullable"] is True
    assert version["lineage"]["allOf"][0]["$ref"].endswith("/Lineage")
