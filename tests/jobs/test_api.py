"""REST API v1 for jobs: roles read every job, a device token only the jobs it started (also on
/jobs/<id>/state/, with JSON errors instead of the login page); filters, paging, cancel."""

import io

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.services import create_device_token, revoke_device_token
from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.factories import DatasetFactory, JobFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(services, "_enqueue", lambda *args: None)


def device(name="edge-cam"):
    issued = create_device_token(name=name, created_by=None)
    issued.device_token.all_loops = True  # imports are the edge engineer's scope to enforce
    issued.device_token.save()
    client = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    client.token = issued.device_token
    client.raw = issued.raw_token
    return client


def import_as(client, dataset) -> Job:
    upload = io.BytesIO(image_bytes(1))
    upload.name = "cam.png"
    response = client.post(
        reverse("api-imports", args=[dataset.pk]), {"files": [upload], "format": "images"}
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"]["id"])
    assert response.json()["api_url"] == f"/api/v1/jobs/{job.pk}/"
    return job


@pytest.fixture
def some_jobs():
    """Jobs of several kinds, states and loops."""
    return {
        "check": JobFactory(kind="system_check", status=JobStatus.SUCCEEDED, result={"ok": True}),
        "train": JobFactory(
            kind="train",
            scope="loop:1",
            params={"loop_id": 1},
            status=JobStatus.RUNNING,
            progress=40,
            log="".join(f"line {n}\n" for n in range(80)),
        ),
        "evaluate": JobFactory(
            kind="evaluate", scope="loop:2", params={"loop_id": 2, "version_id": 5}
        ),
    }


@pytest.mark.parametrize("role", ["admin", "labeler", "viewer"])
def test_every_role_reads_jobs_with_state_progress_result_and_log_tail(client, some_jobs, role):
    client.force_login(UserFactory(role=role))
    listed = client.get(reverse("api-jobs")).json()
    assert [j["kind"] for j in listed["results"]] == ["evaluate", "train", "system_check"]
    assert "log_tail" not in listed["results"][0]
    train = client.get(reverse("api-job", args=[some_jobs["train"].pk])).json()
    assert (train["status"], train["progress"], train["loop"]) == ("running", 40, 1)
    assert train["log_tail"] == [f"line {n}" for n in range(30, 80)]
    short = client.get(reverse("api-job", args=[some_jobs["train"].pk]), {"log_lines": 2})
    assert short.json()["log_tail"] == ["line 78", "line 79"]
    check = client.get(reverse("api-job", args=[some_jobs["check"].pk])).json()
    assert check["result"] == {"ok": True} and check["finished_at"] is None


def test_filters_by_kind_status_and_loop(client, viewer_user, some_jobs):
    client.force_login(viewer_user)
    url = reverse("api-jobs")

    def ids(**query):
        return [j["id"] for j in client.get(url, query).json()["results"]]

    assert ids(kind="train") == [some_jobs["train"].pk]
    assert ids(status="queued") == [some_jobs["evaluate"].pk]
    assert ids(loop=2) == [some_jobs["evaluate"].pk]
    assert ids(loop=1, status="succeeded") == []
    # An empty filter is "any", as the schema says; an empty number is no number.
    assert ids(kind="", status="") == ids()
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    listed = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/jobs/"]["get"]["parameters"]}
    assert "" in listed["kind"]["enum"] and "" in listed["status"]["enum"]
    for bad, message in (
        ({"loop": ""}, "loop must be an integer, not ''"),
        ({"after": ""}, "after must be an integer, not ''"),
        ({"kind": "party"}, "kind must be one of"),
        ({"status": "done"}, "status must be one of"),
        ({"loop": "one"}, "loop must be an integer"),
        ({"after": "-19"}, "after must be a whole number"),
        ({"after": str(2**64)}, "after must be a whole number"),
        ({"loop": "-1"}, "loop must be a whole number"),
    ):
        response = client.get(url, bad)
        assert response.status_code == 400 and message in response.json()["detail"]


def test_jobs_page_with_a_keyset_cursor(client, viewer_user):
    ids = [JobFactory().pk for _ in range(5)]
    client.force_login(viewer_user)
    first = client.get(reverse("api-jobs"), {"limit": 2}).json()
    assert [j["id"] for j in first["results"]] == ids[::-1][:2]
    rest = client.get(reverse("api-jobs"), {"limit": 10, "after": first["next_after"]}).json()
    assert [j["id"] for j in rest["results"]] == ids[::-1][2:] and rest["next_after"] is None


def test_anonymous_gets_401_and_unknown_jobs_404(client, viewer_user, some_jobs):
    for url in (reverse("api-jobs"), reverse("api-job", args=[some_jobs["train"].pk])):
        response = Client().get(url)
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    client.force_login(viewer_user)
    assert client.get(reverse("api-job", args=[999])).status_code == 404


# --- A device reads the jobs it started -------------------------------------------------------


def test_a_device_reads_its_own_import_and_nothing_else(some_jobs):
    dataset = DatasetFactory()
    mine, theirs = device("cam-1"), device("cam-2")
    job = import_as(mine, dataset)
    assert job.device == mine.token and job.started_by == "device:cam-1"
    assert job.created_by is None
    other = import_as(theirs, dataset)

    listed = mine.get(reverse("api-jobs")).json()["results"]
    assert [j["id"] for j in listed] == [job.pk] and listed[0]["device"] == "cam-1"
    body = mine.get(reverse("api-job", args=[job.pk])).json()
    assert (body["kind"], body["params"]["dataset_id"]) == ("dataset_import", dataset.pk)
    assert "staged" not in body["params"]
    for foreign in (other, some_jobs["train"]):
        response = mine.get(reverse("api-job", args=[foreign.pk]))
        assert response.status_code == 403
        assert response.json() == {"detail": "This device token did not start this job."}


def test_a_device_reads_the_export_it_started(some_jobs):
    """As its imports: api.md says a device token reads "the jobs it started"."""
    dataset = DatasetFactory()
    mine = device("cam-1")
    response = mine.post(
        reverse("api-exports", args=[dataset.pk]),
        {"format": "coco"},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(kind="dataset_export")
    assert job.device == mine.token and job.created_by is None
    assert mine.get(reverse("api-job", args=[job.pk])).status_code == 200
    assert [j["id"] for j in mine.get(reverse("api-jobs")).json()["results"]] == [job.pk]


def test_the_state_url_answers_a_device_with_json_never_the_login_page(some_jobs):
    mine = device("cam-1")
    job = import_as(mine, DatasetFactory())
    state = mine.get(reverse("jobs:state", args=[job.pk]))
    assert state.status_code == 200 and state.json()["id"] == job.pk
    assert state.json()["status"] == "queued"

    foreign = mine.get(reverse("jobs:state", args=[some_jobs["train"].pk]))
    assert foreign.status_code == 403 and "did not start" in foreign.json()["detail"]
    missing = mine.get(reverse("jobs:state", args=[999]))
    assert missing.status_code == 404 and missing.json() == {"detail": "No job #999."}
    for header in ("Bearer ilp_wrong", "Bearer", "bearer a b", "Bearerxyz"):
        wrong = Client(headers={"Authorization": header}).get(reverse("jobs:state", args=[job.pk]))
        assert wrong.status_code == 401, header
        assert wrong["WWW-Authenticate"] == "Bearer" and wrong.json()["detail"]
    revoke_device_token(mine.token.pk)
    revoked = mine.get(reverse("jobs:state", args=[job.pk]))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert mine.get(reverse("api-job", args=[job.pk])).status_code == 401


def test_the_state_url_still_sends_a_browser_without_a_session_to_log_in(client, some_jobs):
    url = reverse("jobs:state", args=[some_jobs["train"].pk])
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    client.force_login(UserFactory(role="viewer"))
    assert client.get(url).json()["progress"] == 40
    client.force_login(UserFactory())  # no role
    assert client.get(url).status_code == 403


# --- Cancel -----------------------------------------------------------------------------------


def test_an_admin_cancels_a_queued_job_and_asks_a_running_one_to_stop(client, some_jobs):
    client.force_login(UserFactory(role="admin", username="ada"))
    queued = client.post(reverse("api-job-cancel", args=[some_jobs["evaluate"].pk]))
    assert queued.status_code == 200
    assert queued.json()["status"] == "cancelled"
    assert queued.json()["message"] == "Cancelled by ada before it started"
    running = client.post(reverse("api-job-cancel", args=[some_jobs["train"].pk])).json()
    assert running["status"] == "running" and running["cancel_requested"] is True
    done = client.post(reverse("api-job-cancel", args=[some_jobs["check"].pk]))
    assert done.status_code == 409
    assert done.json()["detail"] == f"Job #{some_jobs['check'].pk} is succeeded: nothing to cancel."
    assert done.json()["job"]["id"] == some_jobs["check"].pk
    assert client.post(reverse("api-job-cancel", args=[999])).status_code == 404


@pytest.mark.parametrize("role", ["labeler", "viewer"])
def test_others_may_not_cancel(client, some_jobs, role):
    client.force_login(UserFactory(role=role))
    url = reverse("api-job-cancel", args=[some_jobs["evaluate"].pk])
    assert client.post(url).status_code == 403
    mine = device()
    assert mine.post(url).status_code == 403
    assert Client().post(url).status_code == 401
    assert Job.objects.get(pk=some_jobs["evaluate"].pk).status == "queued"


# --- Cost and schema --------------------------------------------------------------------------


def test_the_jobs_list_costs_the_same_for_many_jobs(
    client, viewer_user, django_assert_max_num_queries
):
    client.force_login(viewer_user)
    mine = device()
    JobFactory(created_by=viewer_user, device=mine.token)
    client.get(reverse("api-jobs"))
    with django_assert_max_num_queries(6) as few:
        client.get(reverse("api-jobs"))
    for index in range(20):
        JobFactory(created_by=UserFactory(), device=device(f"cam-{index}").token)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get(reverse("api-jobs")).json()["results"]) == 21
    with django_assert_max_num_queries(4):
        assert mine.get(reverse("api-jobs")).status_code == 200


def test_the_schema_documents_the_jobs_operations(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    paths = schema["paths"]
    assert "get" in paths["/api/v1/jobs/"] and "get" in paths["/api/v1/jobs/{job_id}/"]
    cancel = paths["/api/v1/jobs/{job_id}/cancel/"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409"} <= set(cancel)
    job = schema["components"]["schemas"]["Job"]["properties"]
    assert job["finished_at"]["nullable"] and job["device"]["nullable"]
    assert job["loop"]["nullable"] and job["created_by"]["nullable"]
