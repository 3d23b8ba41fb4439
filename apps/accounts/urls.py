from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("devices/", views.device_tokens, name="device_tokens"),
    path("devices/<int:token_id>/scope/", views.token_scope, name="token_scope"),
    path("devices/<int:token_id>/revoke/", views.revoke_token, name="revoke_token"),
]
