"""Requests per device per minute, counted in Redis (a fixed one-minute window per token)."""

import logging
import time

from django.conf import settings

from apps.ops.redis_client import get_redis, key

logger = logging.getLogger(__name__)


def retry_after_s(token_key: str) -> int | None:
    """None when the request may go on; else the seconds until the device may ask again."""
    limit = settings.EDGE_DEVICE_REQUESTS_PER_MINUTE
    if not limit:
        return None
    now = time.time()
    window = int(now // 60)
    name = key("edge-rate", token_key, str(window))
    try:
        client = get_redis()
        pipe = client.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
    except Exception:  # Redis away: serving matters more than rate limiting
        logger.warning("rate limit not checked: Redis is unreachable", exc_info=True)
        return None
    if count <= limit:
        return None
    return max(1, int((window + 1) * 60 - now) + 1)
