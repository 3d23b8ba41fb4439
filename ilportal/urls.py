from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.accounts.forms import ThrottledAuthenticationForm

urlpatterns = [
    path("", include("apps.dashboard.urls")),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("apps.accounts.urls")),
    path("jobs/", include("apps.jobs.urls")),
    path("datasets/", include("apps.datasets.urls")),
    path("loops/", include("apps.loops.urls")),
    path("label/", include("apps.labeling.urls")),
    path("triggers/", include("apps.triggers.urls")),
    path("edge/", include("apps.edge.urls")),
    path("api/v1/", include("apps.datasets.api_urls")),
    path("api/v1/", include("apps.edge.api_urls")),
    path("api/v1/", include("apps.loops.api_urls")),
    path("api/v1/", include("apps.jobs.api_urls")),
    path("api/v1/", include("apps.triggers.api_urls")),
    path("", include("apps.ops.urls")),
    path("admin/", admin.site.urls),
]
# No /media/ route: stored files reach users only through views that check the permission
# (ilportal/protected_files.py).

handler403 = "ilportal.error_views.permission_denied"
handler404 = "ilportal.error_views.page_not_found"
handler500 = "ilportal.error_views.server_error"
