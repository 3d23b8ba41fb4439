"""Error pages: JSON under /api/ (what an API client can read), HTML elsewhere."""

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def page_not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error: it is logged; try again later."}, status=500)
    return defaults.server_error(request)
