"""The Content-Security-Policy header on every response.

The portal's pages load scripts, styles and fonts from its own origin only and have no inline
script, so an injected `<script>` or `onerror=` runs nowhere even if an escaping bug lets one
through. Images may also come from `data:`/`blob:` URLs (canvas, upload previews) and, with
FILE_SERVING=s3-presigned, from the object store the portal redirects image requests to: that
origin is read off a presigned URL (signing is local, nothing is sent), so it is right for
path-style and virtual-hosted buckets alike. Inline `style="..."` attributes are allowed (progress
bars and aspect ratios are set that way); `<style>` elements are not.

CONTENT_SECURITY_POLICY (environment) replaces the whole policy; an empty value turns it off.
"""

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils.deprecation import MiddlewareMixin

from ilportal.protected_files import S3_PRESIGNED

HEADER = "Content-Security-Policy"

logger = logging.getLogger(__name__)


def object_store_origin() -> str | None:
    """The scheme://host[:port] that presigned file URLs point at, or None when files are
    served by the portal itself."""
    if settings.FILE_SERVING != S3_PRESIGNED:
        return None
    try:
        url = default_storage.url("csp-origin-probe", expire=60)
    except Exception:  # no credentials yet, say: the pages must still work
        logger.exception("Could not sign a URL to learn the object store's origin for img-src")
        url = settings.S3_ENDPOINT_URL
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def default_policy() -> str:
    image_sources = ["'self'", "data:", "blob:"]
    origin = object_store_origin()
    if origin:
        image_sources.append(origin)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": image_sources,
        # 'self' covers the job pages' WebSocket (ws:/wss: on the same host) in CSP level 3.
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    def __init__(self, get_response):
        super().__init__(get_response)
        configured = settings.CONTENT_SECURITY_POLICY
        self.policy = default_policy() if configured is None else configured.strip()

    def process_response(self, request, response):
        if self.policy and HEADER not in response:
            response[HEADER] = self.policy
        return response
