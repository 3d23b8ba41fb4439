from django.contrib import admin

from apps.accounts.forms import ThrottledAdminAuthenticationForm
from apps.accounts.models import DeviceToken

# The admin site's own sign-in page counts failures like the portal's (login_throttle).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(DeviceToken)
class DeviceTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "token_sha256", "created_by", "created_at", "last_used_at")
