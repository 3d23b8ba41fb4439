from django.contrib import admin

from apps.edge.models import EdgeDevice, IntakePolicy, IntakeRecord


@admin.register(IntakePolicy)
class IntakePolicyAdmin(admin.ModelAdmin):
    list_display = ["loop", "mode", "sample_percent", "hard_per_hour", "hard_per_day"]


@admin.register(EdgeDevice)
class EdgeDeviceAdmin(admin.ModelAdmin):
    list_display = ["token", "loop", "last_seen_at", "version", "images_sent", "hard_sent"]


@admin.register(IntakeRecord)
class IntakeRecordAdmin(admin.ModelAdmin):
    list_display = ["loop", "outcome", "hard", "hardness", "sample", "created_at"]
    list_filter = ["outcome"]
