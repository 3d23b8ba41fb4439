"""The three roles, as Django groups with permissions.

Each app adds the codenames its features need here; `sync_roles` runs after every migrate,
so a new permission reaches existing installations without a data migration.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

ADMIN = "admin"
LABELER = "labeler"
VIEWER = "viewer"

_VIEW = [
    "jobs.view_job",
    "datasets.view_dataset",
    "datasets.view_sample",
    "datasets.view_annotation",
    "loops.view_loop",
    "loops.view_modelversion",
    "loops.view_evaluation",
    "loops.view_deployment",
    "triggers.view_triggerrule",
    "triggers.view_decision",
]

ROLE_PERMISSIONS: dict[str, list[str] | None] = {
    ADMIN: None,  # every permission
    # Labelers upload and label; deleting (datasets or samples) is for admins.
    LABELER: _VIEW + ["datasets.add_sample", "datasets.change_sample", "datasets.add_annotation"],
    VIEWER: _VIEW,
}

# What an edge client holding a device token may do through the API.
DEVICE_PERMISSIONS = frozenset(
    {"datasets.view_dataset", "datasets.view_sample", "datasets.add_sample"}
)


def _permissions(codenames: list[str]) -> list[Permission]:
    found = []
    for dotted in codenames:
        app_label, codename = dotted.split(".", 1)
        found.extend(
            Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        )
    return found


def sync_roles() -> None:
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        if codenames is None:
            group.permissions.set(Permission.objects.all())
        else:
            group.permissions.set(_permissions(codenames))
    sync_staff_flags()


# Admins manage users in Django admin, which lets in only staff: a user is staff exactly when
# they hold the admin role (or are a superuser). Kept in sync wherever roles change: the
# signals below (group membership, user saves) and sync_roles() for existing users.


def _should_be_staff(user) -> bool:
    return user.is_superuser or user.groups.filter(name=ADMIN).exists()


def sync_staff_flags() -> None:
    User = get_user_model()
    admins = Q(is_superuser=True) | Q(groups__name=ADMIN)
    User.objects.filter(admins, is_staff=False).update(is_staff=True)
    User.objects.filter(is_staff=True).exclude(admins).update(is_staff=False)


def sync_staff_flag(user) -> None:
    staff = _should_be_staff(user)
    if user.is_staff != staff:
        type(user).objects.filter(pk=user.pk).update(is_staff=staff)
        user.is_staff = staff


def staff_follows_role_on_save(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        sync_staff_flag(instance)


def staff_follows_role_on_membership(sender, instance, action, reverse, model, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if isinstance(instance, Group):  # group.user_set changed: these users
        users = instance.user_set.all() if pk_set is None else model.objects.filter(pk__in=pk_set)
        if action == "post_clear":
            sync_staff_flags()
            return
        for user in users:
            sync_staff_flag(user)
    else:
        sync_staff_flag(instance)


def sync_roles_after_migrate(sender, **kwargs) -> None:
    """post_migrate is sent once per installed app, in INSTALLED_APPS order, and each app's
    permissions are created by its own: only after the last one do all of them exist."""
    from django.apps import apps

    if sender.label == list(apps.get_app_configs())[-1].label:
        sync_roles()


def role_of(user) -> str | None:
    """The strongest role the user holds (a superuser counts as admin)."""
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, LABELER, VIEWER):
        if role in names:
            return role
    return None
