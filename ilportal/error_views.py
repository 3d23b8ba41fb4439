"""Error pages: JSON under /api/ (what an API client can read), the portal's page elsewhere."""

from django.http import JsonResponse

from apps.dashboard import views as pages

API_PREFIX = "/api/"


def page_not_found(request, exception=None):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return pages.page_not_found(request, exception)


def permission_denied(request, exception=None):
    if request.path.startswith(API_PREFIX):
        reason = str(exception) if exception and str(exception) else ""
        return JsonResponse({"detail": reason or "You may not do this."}, status=403)
    return pages.permission_denied(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error: it is logged; try again later."}, status=500)
    return pages.server_error(request)
