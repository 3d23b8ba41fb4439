from django.contrib import admin

from apps.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "trigger", "started_by", "created_at")
    list_filter = ("kind", "status", "trigger")
    readonly_fields = [f.name for f in Job._meta.fields]
