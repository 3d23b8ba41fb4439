from django.urls import path

from apps.edge import views

app_name = "edge"
urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("loops/<int:loop_id>/intake/", views.intake_policy, name="intake_policy"),
]
