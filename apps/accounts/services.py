import copy
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import DeviceToken
from apps.accounts.roles import ADMIN, sync_roles
from apps.ops.generation import GenerationCache, new_generation

TOKEN_PREFIX = "ilp_"
LAST_USED_RESOLUTION = timedelta(seconds=60)


class AccountsError(Exception):
    pass


def _sha256(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    device_token: DeviceToken
    raw_token: str  # shown once, never stored


def create_device_token(*, name: str, created_by, loops=(), all_loops: bool = False) -> IssuedToken:
    """A new token, scoped to `loops` (or to every loop with `all_loops`)."""
    name = name.strip()
    if not name:
        raise AccountsError("A device token needs a name.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = DeviceToken.objects.create(
            name=name,
            prefix=raw[:12],
            token_sha256=_sha256(raw),
            created_by=created_by,
            all_loops=all_loops,
        )
        token.loops.set(loops)
    return IssuedToken(device_token=token, raw_token=raw)


def set_device_token_scope(token_id: int, *, loops, all_loops: bool) -> DeviceToken:
    """What the token may use from now on: these loops (and their datasets), or every loop."""
    with transaction.atomic():
        token = DeviceToken.objects.select_for_update().get(pk=token_id)
        token.all_loops = all_loops
        token.save(update_fields=["all_loops"])
        token.loops.set(loops)
    return token


def revoke_device_token(token_id: int) -> DeviceToken:
    token = DeviceToken.objects.get(pk=token_id)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# Active tokens with their scope, by sha256: a device's requests ask the database nothing about
# its token until a token or a loop changes (then `tokens_changed` starts a new generation).
DEVICE_TOKENS_GENERATION = "device-tokens"
_active_tokens: GenerationCache[DeviceToken] = GenerationCache(DEVICE_TOKENS_GENERATION)


def tokens_changed(*args, **kwargs) -> None:
    """Signal receiver: a token, its scope or a loop changed; cached tokens are stale."""
    new_generation(DEVICE_TOKENS_GENERATION)


def _load_active_token(token_sha256: str) -> DeviceToken | None:
    token = DeviceToken.objects.filter(token_sha256=token_sha256, revoked_at__isnull=True).first()
    if token is not None:
        token.load_scope()
    return token


def authenticate_device_token(raw_token: str) -> DeviceToken | None:
    """The active token matching `raw_token` (its scope loaded), or None. Records when it was
    last used."""
    if not raw_token or not raw_token.startswith(TOKEN_PREFIX):
        return None
    token_sha256 = _sha256(raw_token)
    cached = _active_tokens.get(token_sha256, lambda: _load_active_token(token_sha256))
    if cached is None:
        return None
    now = timezone.now()
    # At most one write a minute per token: a device predicting many times a second must not
    # queue on the database's write lock for a timestamp.
    if cached.last_used_at is None or now - cached.last_used_at > LAST_USED_RESOLUTION:
        DeviceToken.objects.filter(pk=cached.pk).update(last_used_at=now)
        cached.last_used_at = now
    return copy.copy(cached)  # each request its own instance: the cached one is shared


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str


def ensure_first_admin(username: str = "admin") -> FirstAdmin | None:
    """Creates the first admin account when there is no user at all; None if users exist."""
    User = get_user_model()
    with transaction.atomic():
        if User.objects.exists():
            return None
        sync_roles()
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        user.groups.add(Group.objects.get(name=ADMIN))
    return FirstAdmin(username=username, password=password)


def create_user_with_role(*, username: str, password: str, role: str):
    User = get_user_model()
    sync_roles()
    user = User.objects.create_user(username=username, password=password)
    user.groups.add(Group.objects.get(name=role))
    return user
