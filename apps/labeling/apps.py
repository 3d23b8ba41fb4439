from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles_after_labeling_migrate(sender, **kwargs) -> None:
    # accounts syncs the roles after its own migrations, before this app's permissions (e.g.
    # labeling.review_labels) exist on a fresh install: sync again once they do.
    if sender.label == "labeling":
        from apps.accounts.roles import sync_roles

        sync_roles()


class LabelingConfig(AppConfig):
    name = "apps.labeling"
    label = "labeling"

    def ready(self):
        post_migrate.connect(_sync_roles_after_labeling_migrate, dispatch_uid="labeling.roles")
