import pytest
from django.contrib.auth.models import Group

from apps.accounts.roles import ADMIN, LABELER, VIEWER, role_of, sync_roles
from apps.accounts.services import ensure_first_admin
from apps.jobs.models import Job
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_three_roles_exist_after_migrate_with_their_permissions():
    sync_roles()
    admin, labeler, viewer = (Group.objects.get(name=n) for n in (ADMIN, LABELER, VIEWER))
    assert admin.permissions.filter(codename="add_job").exists()
    assert admin.permissions.filter(codename="add_devicetoken").exists()
    for group in (labeler, viewer):
        assert group.permissions.filter(codename="view_job").exists()
        assert not group.permissions.filter(codename="add_job").exists()
        assert not group.permissions.filter(codename="change_job").exists()


def test_first_admin_is_created_once_with_a_usable_password():
    first = ensure_first_admin()
    assert first is not None
    user = first and UserFactory._meta.model.objects.get(username=first.username)
    assert user.check_password(first.password)
    assert user.is_superuser and role_of(user) == ADMIN
    assert ensure_first_admin() is None


@pytest.mark.parametrize("role", [LABELER, VIEWER])
def test_only_admins_start_jobs(client, role):
    client.force_login(UserFactory(role=role))
    response = client.post("/jobs/start/system_check/")
    assert response.status_code == 403
    assert Job.objects.count() == 0


@pytest.mark.parametrize("role", [LABELER, VIEWER])
def test_only_admins_cancel_jobs(client, role):
    job = JobFactory()
    client.force_login(UserFactory(role=role))
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.status == "queued" and not job.cancel_requested


def test_user_without_role_sees_no_jobs(client):
    client.force_login(UserFactory())
    assert client.get("/jobs/").status_code == 403
    assert b"has no role" in client.get("/").content


def test_unknown_job_kind_is_404(client):
    client.force_login(UserFactory(role=ADMIN))
    assert client.post("/jobs/start/format_disk/").status_code == 404
    assert Job.objects.count() == 0


def test_kinds_that_need_input_cannot_be_started_from_the_jobs_page(client):
    client.force_login(UserFactory(role=ADMIN))
    page = client.get("/jobs/").content.decode()
    assert "start-system_check" in page and "start-train" not in page
    assert client.post("/jobs/start/train/").status_code == 404
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_a_fresh_migrate_gives_roles_the_permissions_of_every_app():
    """The test database was just migrated: no test here has synced the roles by hand."""
    from django.contrib.auth.models import Group, Permission

    admin = Group.objects.get(name="admin")
    assert admin.permissions.count() == Permission.objects.count()
    labeler_codenames = set(
        Group.objects.get(name="labeler").permissions.values_list("codename", flat=True)
    )
    assert {"add_annotation", "view_loop"} <= labeler_codenames
    assert admin.permissions.filter(content_type__app_label="labeling").exists()
