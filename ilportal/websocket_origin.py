"""The WebSocket Origin check: the same rule Django's CSRF check applies to a form POST.

Channels' AllowedHostsOriginValidator compares only the Origin's host name with ALLOWED_HOSTS,
so a page on another port or scheme of the same host (a dev server, a notebook, a monitoring UI)
could open the job sockets with the user's cookies. Here an Origin is accepted when it is the
connection's own origin (its scheme, and the Host header, itself in ALLOWED_HOSTS) or one of
CSRF_TRUSTED_ORIGINS (``https://*.example.com`` matches subdomains, as for CSRF).
"""

from urllib.parse import urlsplit

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return value.decode("latin1")
            except UnicodeDecodeError:
                return None
    return None


def origin_allowed(origin: str | None, scope) -> bool:
    if not origin:
        return False
    origin = origin.lower()
    host = (_header(scope, b"host") or "").lower()
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    own_host = host and validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS)
    if own_host and origin == f"{scheme}://{host}":
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        trusted = trusted.lower()
        if "*" not in trusted:
            if origin == trusted:
                return True
            continue
        pattern, parsed = urlsplit(trusted), urlsplit(origin)
        if pattern.scheme == parsed.scheme and is_same_domain(
            parsed.netloc, pattern.netloc.replace("*", "", 1)
        ):
            return True
    return False


class SameOriginValidator(OriginValidator):
    """Refuses (closes) a WebSocket whose Origin is not the portal's own or a trusted one."""

    def __init__(self, application):
        super().__init__(application, allowed_origins=[])

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and origin_allowed(_header(scope, b"origin"), scope):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)  # an empty list denies everything
