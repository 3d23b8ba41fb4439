"""The admin role opens Django admin (users are managed there, as the README says): a user is
staff exactly when they hold the admin role, however the role was given or taken."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.accounts.roles import ADMIN, sync_roles
from apps.accounts.services import create_user_with_role
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_an_admin_who_is_not_the_superuser_manages_users_in_django_admin(client):
    admin = create_user_with_role(username="second-admin", password=PASSWORD, role="admin")
    assert admin.is_staff and not admin.is_superuser
    assert client.login(username="second-admin", password=PASSWORD)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 200
    labeler = UserFactory(role="labeler")
    response = client.get(f"/admin/auth/user/{labeler.pk}/change/")
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["labeler", "viewer", None])
def test_other_roles_stay_out_of_django_admin(client, role):
    user = UserFactory(role=role)
    assert not user.is_staff
    client.force_login(user)
    assert client.get("/admin/").status_code == 302  # to the admin login page


def test_staff_follows_the_admin_group_both_ways():
    sync_roles()
    admins = Group.objects.get(name=ADMIN)
    user = UserFactory(role="labeler")
    user.groups.add(admins)
    user.refresh_from_db()
    assert user.is_staff
    user.groups.remove(admins)
    user.refresh_from_db()
    assert not user.is_staff
    admins.user_set.add(user)  # from the group's side, as Django admin's group page does
    user.refresh_from_db()
    assert user.is_staff
    admins.user_set.clear()
    user.refresh_from_db()
    assert not user.is_staff


def test_a_save_cannot_drop_staff_from_an_admin():
    user = UserFactory(role="admin")
    user.is_staff = False
    user.save()
    user.refresh_from_db()
    assert user.is_staff


def test_existing_users_are_brought_in_line_by_the_role_sync():
    User = get_user_model()
    admin = UserFactory(role="admin")
    viewer = UserFactory(role="viewer")
    User.objects.filter(pk=admin.pk).update(is_staff=False)  # as before this rule existed
    User.objects.filter(pk=viewer.pk).update(is_staff=True)
    sync_roles()  # runs after every migrate
    assert User.objects.get(pk=admin.pk).is_staff
    assert not User.objects.get(pk=viewer.pk).is_staff
