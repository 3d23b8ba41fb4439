"""How the processes find Redis: REDIS_URL, or the embedded server's unix socket in var/."""

from pathlib import Path


def embedded_socket_path(var_dir: Path) -> Path:
    return var_dir / "redis" / "redis.sock"


def embedded_redis_url(var_dir: Path) -> str:
    return f"unix://{embedded_socket_path(var_dir)}"


def celery_broker_url(redis_url: str) -> str:
    """Kombu names the unix-socket transport redis+socket://."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url
