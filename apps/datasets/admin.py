from django.contrib import admin

from apps.datasets.models import Annotation, Box, Dataset, Sample


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    # Files and revisions change only through the services (uploads, the labeling page).
    list_display = ("id", "dataset", "original_name", "status", "split", "source", "created_at")
    list_filter = ("status", "split", "source", "dataset")
    readonly_fields = [f.name for f in Sample._meta.fields]
    list_select_related = ("dataset",)


class BoxInline(admin.TabularInline):
    model = Box
    extra = 0
    readonly_fields = ("class_name", "x1", "y1", "x2", "y2")
    can_delete = False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("id", "sample", "revision", "source", "created_by", "created_at")
    readonly_fields = [f.name for f in Annotation._meta.fields]
    inlines = [BoxInline]
