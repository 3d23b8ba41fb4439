import pytest

from apps.jobs import services as jobs
from apps.jobs.models import Job
from apps.loops.models import Loop, ModelVersion
from tests.factories import UserFactory
from tests.loops.conftest import tiny_yaml

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


def create_form(dataset, **overrides):
    return {
        "name": "line-3",
        "dataset": dataset.pk,
        "algorithm_yaml": tiny_yaml(),
        "gate_min_f1": "0.5",
        "gate_min_f1_gain": "0.01",
        "gate_max_forgetting": "0.02",
        "auto_evaluate": "on",
        "auto_deploy": "on",
        "initial_model": "train",
        **overrides,
    }


def test_admin_creates_a_loop_and_its_first_training_starts(client, synthetic_dataset):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/loops/new/", create_form(synthetic_dataset))
    loop = Loop.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/loops/{loop.pk}/"
    assert loop.gate_min_metrics == {"f1": 0.5} and loop.gate_min_gain == {"f1": 0.01}
    job = Job.objects.get()
    assert (job.kind, job.scope, job.params["loop_id"]) == ("train", f"loop:{loop.pk}", loop.pk)
    page = client.get(f"/loops/{loop.pk}/").content.decode()
    assert "Train running: #" in page and "the first is being trained" in page


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("basemodel: {name: NoSuchModel}", "NoSuchModel"),
        ("basemodel:\n  name: FPN\n  hyperparameters: {learning_rate: fast}", "learning_rate"),
        ("basemodel:\n  name: FPN\n  hyperparameters: {class_names: [a, b]}", "differ from the"),
        ("just: [unbalanced", "YAML"),
        ("basemodel: {name: FPN}\n# " + "x" * 70_000, "at most 65,536 characters"),
    ],
)
def test_a_bad_algorithm_yaml_is_a_form_error_and_nothing_is_created(
    client, synthetic_dataset, yaml_text, message
):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/loops/new/", create_form(synthetic_dataset, algorithm_yaml=yaml_text))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].non_field_errors())
    assert not Loop.objects.exists() and not Job.objects.exists()


def test_a_broken_uploaded_archive_is_refused_and_nothing_is_created(client, synthetic_dataset):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(UserFactory(role="admin"))
    broken = SimpleUploadedFile("model.zip", b"definitely not a zip")
    response = client.post(
        "/loops/new/", create_form(synthetic_dataset, initial_model="upload", archive=broken)
    )
    assert response.status_code == 200
    assert "Not a usable model archive" in " ".join(response.context["form"].non_field_errors())
    assert not Loop.objects.exists() and not ModelVersion.objects.exists()


def test_two_fast_clicks_on_train_now_start_one_job(client, tiny_loop):
    client.force_login(UserFactory(role="admin"))
    first = client.post(f"/loops/{tiny_loop.pk}/train/")
    second = client.post(f"/loops/{tiny_loop.pk}/train/")
    job = Job.objects.get()
    assert first["Location"] == second["Location"] == f"/jobs/{job.pk}/"
    assert "Train running: #" in client.get(f"/loops/{tiny_loop.pk}/").content.decode()


@pytest.mark.parametrize("role", ["labeler", "viewer"])
def test_only_admins_train_evaluate_and_deploy(client, tiny_loop, role):
    client.force_login(UserFactory(role=role))
    assert client.get(f"/loops/{tiny_loop.pk}/").status_code == 200
    assert client.post(f"/loops/{tiny_loop.pk}/train/").status_code == 403
    assert client.get("/loops/new/").status_code == 403
    assert not Job.objects.exists()


def test_the_version_pages_running_job_buttons_are_live_like_the_loop_pages(client, tiny_loop):
    """The version page shows the same running-job buttons (loops/_buttons.html) and loads the
    script that makes them live (its behaviour: tests/browser/test_loop_page.py)."""
    _fake_version(tiny_loop, gate_passed=None)
    job = Job.objects.create(
        kind="evaluate", status="running", trigger="manual", scope=tiny_loop.job_scope
    )
    client.force_login(UserFactory(role="admin"))
    for page in (f"/loops/{tiny_loop.pk}/", f"/loops/{tiny_loop.pk}/v1/"):
        text = client.get(page).content.decode()
        assert f'data-live-job="{job.pk}"' in text, page
        assert "js/live_jobs.js" in text and "js/job_socket.js" in text, page


def test_deploying_a_version_that_failed_its_gate_says_why(client, tiny_loop):
    version = _fake_version(tiny_loop, gate_passed=False)
    client.force_login(UserFactory(role="admin"))
    response = client.post(f"/loops/{tiny_loop.pk}/v1/deploy/", {"confirmed": "yes"}, follow=True)
    text = response.content.decode()
    assert "has not passed its gate: Δf1 +0.004 &lt; +0.010" in text
    assert not Job.objects.filter(kind="deploy").exists()
    assert "v1 stays a candidate" in client.get(f"/loops/{tiny_loop.pk}/v1/").content.decode()
    version.refresh_from_db()
    assert version.stage == "candidate"


def test_a_forced_deploy_needs_a_reason(client, tiny_loop):
    _fake_version(tiny_loop, gate_passed=False)
    client.force_login(UserFactory(role="admin"))
    response = client.post(
        f"/loops/{tiny_loop.pk}/v1/force/", {"reason": "  ", "confirmed": "yes"}, follow=True
    )
    assert "needs a written reason" in response.content.decode()
    for reason, message in (("a\x00b", "NUL characters"), ("x" * 2001, "at most 2,000")):
        refused = client.post(
            f"/loops/{tiny_loop.pk}/v1/force/", {"reason": reason, "confirmed": "yes"}, follow=True
        )
        assert refused.status_code == 200 and message in refused.content.decode()
    asked = client.post(f"/loops/{tiny_loop.pk}/v1/force/", {"reason": "line stopped"})
    assert "Force-deploy v1 of line-3?" in asked.content.decode()
    assert 'name="reason" value="line stopped"' in asked.content.decode()
    assert not Job.objects.filter(kind="deploy").exists()
    client.post(f"/loops/{tiny_loop.pk}/v1/force/", {"reason": "line stopped", "confirmed": "yes"})
    job = Job.objects.get(kind="deploy")
    assert job.params["action"] == "force" and job.params["reason"] == "line stopped"


def _fake_version(loop, gate_passed):
    return ModelVersion.objects.create(
        loop=loop,
        number=1,
        source="uploaded",
        artifact="models/none.zip",
        artifact_sha256="0" * 64,
        artifact_size=1,
        gate_passed=gate_passed,
        gate_reasons=[
            {"passed": True, "text": "f1 0.700 ≥ 0.600"},
            {"passed": False, "text": "Δf1 +0.004 < +0.010"},
        ],
    )


def test_settings_are_edited_and_validated(client, tiny_loop):
    client.force_login(UserFactory(role="admin"))
    page = client.get(f"/loops/{tiny_loop.pk}/settings/")
    assert page.status_code == 200 and "max_iteration: 6" in page.content.decode()
    form = {
        "algorithm_yaml": tiny_yaml(steps=9),
        "gate_min_f1": "0.7",
        "gate_max_forgetting": "0.05",
        "gate_min_edge_images": "25",
        "auto_deploy": "on",
    }
    assert client.post(f"/loops/{tiny_loop.pk}/settings/", form).status_code == 302
    tiny_loop.refresh_from_db()
    assert tiny_loop.gate_min_edge_images == 25
    assert "max_iteration: 9" in tiny_loop.algorithm_yaml
    assert tiny_loop.gate_min_metrics == {"f1": 0.7} and tiny_loop.gate_min_gain == {}
    assert tiny_loop.auto_deploy and not tiny_loop.auto_evaluate

    too_few = {**form, "gate_min_edge_images": "0"}
    response = client.post(f"/loops/{tiny_loop.pk}/settings/", too_few)
    assert response.status_code == 200 and "greater than or equal to 1" in response.content.decode()

    bad = {**form, "algorithm_yaml": "basemodel: {name: FPN, hyperparameters: {momentum: 7}}"}
    response = client.post(f"/loops/{tiny_loop.pk}/settings/", bad)
    assert response.status_code == 200 and "momentum" in response.content.decode()
    tiny_loop.refresh_from_db()
    assert "max_iteration: 9" in tiny_loop.algorithm_yaml


def test_labelers_cannot_change_settings(client, tiny_loop):
    client.force_login(UserFactory(role="labeler"))
    assert client.get(f"/loops/{tiny_loop.pk}/settings/").status_code == 403


def test_the_default_yaml_names_the_dataset_classes_even_odd_ones():
    from apps.loops.services import check_algorithm_yaml, default_algorithm_yaml

    names = ["hard hat: red", "vest", 'cone "orange"']
    config = check_algorithm_yaml(default_algorithm_yaml(names), names)
    assert config.basemodel.hyperparameters["class_names"] == names
