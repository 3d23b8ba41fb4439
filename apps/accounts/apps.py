from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        from django.contrib.auth import get_user_model

        from apps.accounts.models import DeviceToken
        from apps.accounts.roles import (
            staff_follows_role_on_membership,
            staff_follows_role_on_save,
            sync_roles_after_migrate,
        )
        from apps.accounts.services import tokens_changed

        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="accounts.sync_roles")
        # A cached token (its scope: loops and their datasets) is stale after any of these.
        for sender in (DeviceToken, "loops.Loop"):
            post_save.connect(tokens_changed, sender=sender, dispatch_uid=f"tokens.save.{sender}")
            post_delete.connect(tokens_changed, sender=sender, dispatch_uid=f"tokens.del.{sender}")
        m2m_changed.connect(
            tokens_changed, sender=DeviceToken.loops.through, dispatch_uid="tokens.scope"
        )
        User = get_user_model()
        post_save.connect(staff_follows_role_on_save, sender=User, dispatch_uid="accounts.staff")
        m2m_changed.connect(
            staff_follows_role_on_membership,
            sender=User.groups.through,
            dispatch_uid="accounts.staff_membership",
        )
