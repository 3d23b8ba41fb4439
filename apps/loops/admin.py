from django.contrib import admin

from apps.loops.models import Deployment, Evaluation, Loop, ModelVersion


@admin.register(Loop)
class LoopAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset", "deployed_version", "auto_deploy", "created_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("loop", "number", "source", "stage", "gate_passed", "created_at")
    list_filter = ("stage", "source")
    readonly_fields = ("artifact", "artifact_sha256", "snapshot_sha256")


admin.site.register(Evaluation)
admin.site.register(Deployment)
