"""The three roles, as Django groups with permissions.

Each app adds the codenames its features need here; `sync_roles` runs after every migrate,
so a new permission reaches existing installations without a data migration.
"""

from django.contrib.auth.models import Group, Permission

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


def sync_roles_after_migrate(sender, **kwargs) -> None:
    if sender.label == "accounts":
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
