"""Failed sign-ins per account and client address, counted in Redis: after
``LOGIN_MAX_FAILURES`` within ``LOGIN_LOCKOUT_S`` that pair may not try again until the window
ends (the right password included), so a password cannot be guessed at the speed of the server.

Keyed by account *and* address: a stranger guessing from elsewhere cannot lock a user out of
their own sign-in. Redis away: sign-in still works, unthrottled, and the log says so.
"""

import logging

from django.conf import settings

from apps.ops.redis_client import get_redis, key

logger = logging.getLogger(__name__)


def _key(username: str, address: str) -> str:
    return key("login-failures", username.strip().lower()[:150], address or "-")


def wait_s(username: str, address: str) -> int:
    """0 when this account may be tried from this address; else the seconds until it may."""
    if not settings.LOGIN_MAX_FAILURES:
        return 0
    try:
        client = get_redis()
        failures = int(client.get(_key(username, address)) or 0)
        if failures < settings.LOGIN_MAX_FAILURES:
            return 0
        return max(1, int(client.ttl(_key(username, address))))
    except Exception:
        logger.warning("sign-in attempts not counted: Redis is unreachable", exc_info=True)
        return 0


def record_failure(username: str, address: str) -> None:
    if not settings.LOGIN_MAX_FAILURES:
        return
    name = _key(username, address)
    try:
        pipe = get_redis().pipeline()
        pipe.set(name, 0, ex=settings.LOGIN_LOCKOUT_S, nx=True)  # the first failure opens it
        pipe.incr(name)  # keeps the expiry
        pipe.execute()
    except Exception:
        logger.warning("sign-in failure not counted: Redis is unreachable", exc_info=True)


def forget(username: str, address: str) -> None:
    try:
        get_redis().delete(_key(username, address))
    except Exception:
        logger.warning("sign-in failures not cleared: Redis is unreachable", exc_info=True)


def minutes(seconds: int) -> str:
    count = max(1, round(seconds / 60 + 0.49))
    return f"{count} minute{'s' if count != 1 else ''}"
