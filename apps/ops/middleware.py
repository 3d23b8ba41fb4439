"""A broker or storage outage during a request gets a clear answer, not a bare HTML 500.

The API answers 503 with a JSON `detail`; a page that posted a form goes back to where it came from
with the reason as a message; anything else gets a 503 page that says what is unavailable.
"""

import logging

import redis
from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from kombu.exceptions import OperationalError as BrokerOperationalError

from apps.jobs.services import BrokerUnavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "10"


def describe_outage(exc: BaseException) -> str | None:
    """What is unavailable, in words, or None when the exception is not an outage."""
    if isinstance(exc, BrokerUnavailable):
        return str(exc)
    if isinstance(exc, BrokerOperationalError | redis.RedisError):
        return (
            f"The job queue (Redis) cannot be reached right now ({type(exc).__name__}: {exc}). "
            "Try again in a moment."
        )
    if isinstance(exc, OSError | BotoCoreError | ClientError):
        detail = getattr(exc, "strerror", None) or str(exc)
        return (
            f"The file storage refused the write ({type(exc).__name__}: {detail}). Nothing was "
            "stored; check the storage (free space, permissions, credentials) and try again."
        )
    from apps.loops.artifacts import ArtifactError

    if isinstance(exc, ArtifactError):
        return f"The file storage failed: {exc}"
    return None


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exc):
        reason = describe_outage(exc)
        if reason is None:
            return None
        logger.warning("%s %s: %s", request.method, request.path, reason, exc_info=exc)
        if request.path.startswith("/api/") or "application/json" in request.headers.get(
            "Accept", ""
        ):
            response = JsonResponse({"detail": reason}, status=503)
        elif request.method == "POST" and _safe_referer(request):
            messages.error(request, reason)
            return HttpResponseRedirect(request.headers["Referer"])
        else:
            response = render(request, "ops/unavailable.html", {"reason": reason}, status=503)
        response["Retry-After"] = RETRY_AFTER_S
        return response


def _safe_referer(request) -> bool:
    referer = request.headers.get("Referer", "")
    return bool(referer) and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
