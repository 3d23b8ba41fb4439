from django.conf import settings
from django.db import models


class DeviceToken(models.Model):
    """A credential for an edge client. Only the sha256 of the token is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to tell tokens apart.")
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Scope: the loops (and so the datasets) this device may predict on, upload to and read.
    # Tokens issued before scoping existed keep `all_loops` until an admin scopes them.
    all_loops = models.BooleanField(
        default=False, help_text="Unscoped: the token may use every loop."
    )
    loops = models.ManyToManyField("loops.Loop", blank=True, related_name="device_tokens")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def load_scope(self) -> None:
        """Reads the scope once, so that the checks below ask the database nothing (the token
        is then cached for the predict path; see accounts.services.authenticate_device_token)."""
        rows = list(self.loops.values_list("pk", "dataset_id"))
        self._scope = {
            "pk": frozenset(row[0] for row in rows),
            "dataset_id": frozenset(row[1] for row in rows),
        }

    def _in_scope(self, loop_field: str, value: int) -> bool:
        if self.all_loops:
            return True
        scope = getattr(self, "_scope", None)
        if scope is not None:
            return value in scope[loop_field]
        return self.loops.filter(**{loop_field: value}).exists()

    def may_use_loop(self, loop_id: int) -> bool:
        return self._in_scope("pk", loop_id)

    def may_use_dataset(self, dataset_id: int) -> bool:
        """A device reaches a dataset through a loop it is scoped to."""
        return self._in_scope("dataset_id", dataset_id)
