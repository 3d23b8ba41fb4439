from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("apps.dashboard.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("apps.accounts.urls")),
    path("jobs/", include("apps.jobs.urls")),
    path("datasets/", include("apps.datasets.urls")),
    path("loops/", include("apps.loops.urls")),
    path("api/v1/", include("apps.datasets.api_urls")),
    path("", include("apps.ops.urls")),
    path("admin/", admin.site.urls),
]

handler403 = "apps.dashboard.views.permission_denied"
handler404 = "apps.dashboard.views.page_not_found"
handler500 = "apps.dashboard.views.server_error"

if not settings.S3_BUCKET:
    from django.contrib.auth.decorators import login_required
    from django.views.static import serve

    # Local media files are served to logged-in users only (datasets are not public).
    urlpatterns.append(
        path(
            "media/<path:path>",
            login_required(serve),
            {"document_root": settings.MEDIA_ROOT},
        )
    )
