from django.contrib import admin

from apps.labeling.models import Claim, LabelReview, ReviewSetting, Skip


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    list_display = ("sample", "user", "claimed_at", "expires_at", "returned")
    list_filter = ("dataset",)
    raw_id_fields = ("sample",)


@admin.register(LabelReview)
class LabelReviewAdmin(admin.ModelAdmin):
    list_display = ("annotation", "state", "labeler", "reviewer", "decided_at")
    list_filter = ("state", "dataset")
    readonly_fields = ("annotation", "sample", "dataset", "labeler")


admin.site.register(ReviewSetting)
admin.site.register(Skip)
