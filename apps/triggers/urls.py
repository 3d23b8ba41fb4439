from django.urls import path

from apps.triggers import views

app_name = "triggers"
urlpatterns = [
    path("loop/<int:loop_id>/", views.loop_rules, name="loop_rules"),
    path("loop/<int:loop_id>/new/", views.rule_create, name="create"),
    path("<int:rule_id>/", views.rule_detail, name="rule"),
    path("<int:rule_id>/edit/", views.rule_edit, name="edit"),
    path("<int:rule_id>/fire/", views.rule_fire, name="fire"),
    path("<int:rule_id>/toggle/", views.rule_toggle, name="toggle"),
    path("<int:rule_id>/delete/", views.rule_delete, name="delete"),
]
