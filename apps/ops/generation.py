"""Process-local caches that stay right across processes.

The predict API answers many requests a second per device, and what it needs to know (the token,
its scope, the loop's deployed version and intake policy) changes a few times a day. Reading it
from the database on every request cost more than the inference itself (a new connection per
request under ASGI, then four queries). A `GenerationCache` keeps it in the process instead and
asks Redis one question per request: is the *generation* it was read under still current?

Whoever changes what is cached calls `new_generation(name)`: at once and again after the
transaction commits. Every process then reads the database again on its next request, so a
revoked token, a rescoped one or a moved deployed pointer takes effect at once, in every process.
The generation is read *before* the database, so a value is never filed under a generation newer
than the data it was read from. Without Redis (unreachable), every call reads the database; an
entry is also never kept longer than `max_age_s`, in case a change was made without a new
generation (a raw SQL edit).
"""

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import redis
from django.db import transaction

from apps.ops.redis_client import get_redis, key

logger = logging.getLogger(__name__)

Value = TypeVar("Value")


def _generation_key(name: str) -> str:
    return key("generation", name)


def current_generation(name: str) -> bytes | None:
    """The generation of ``name`` now; None when Redis cannot say (then nothing is cached)."""
    try:
        client = get_redis()
        generation = client.get(_generation_key(name))
        if generation is None:  # a fresh (or restarted) Redis: start one; first writer wins
            client.set(_generation_key(name), uuid.uuid4().hex, nx=True)
            generation = client.get(_generation_key(name))
        return generation
    except redis.RedisError as exc:
        logger.warning("cache generation %r unknown: Redis is unreachable (%s)", name, exc)
        return None


def new_generation(name: str) -> None:
    """Everything cached under ``name`` is stale: now, and again once the transaction commits
    (a process that read the old rows in between files them under the first new generation)."""
    _set_new_generation(name)
    transaction.on_commit(lambda: _set_new_generation(name))


def _set_new_generation(name: str) -> None:
    try:
        get_redis().set(_generation_key(name), uuid.uuid4().hex)
    except redis.RedisError:
        # Readers cannot reach Redis either, so they read the database; max_age_s bounds the rest.
        logger.warning("cache generation %r not renewed: Redis is unreachable", name)


class GenerationCache(Generic[Value]):
    def __init__(self, name: str, *, max_age_s: float = 10.0, max_entries: int = 10_000):
        self.name = name
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[bytes, float, Value]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cache_key: Hashable, load: Callable[[], Value]) -> Value:
        """The cached value of ``cache_key`` if still current, else ``load()``, kept unless it is
        None (a miss: an unknown token sent again and again must not evict the known ones)."""
        generation = current_generation(self.name)
        if generation is None:
            return load()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(cache_key)
        if entry is not None and entry[0] == generation and now - entry[1] < self.max_age_s:
            return entry[2]
        value = load()
        if value is None:
            return value
        with self._lock:
            self._entries[cache_key] = (generation, now, value)
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
