from django.contrib import admin

from apps.triggers.models import Decision, TriggerRule


@admin.register(TriggerRule)
class TriggerRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "loop", "kind", "action", "enabled", "last_verdict", "last_fired_at"]
    list_filter = ["kind", "enabled"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["rule", "at", "cause", "verdict", "reason", "job"]
    list_filter = ["verdict", "reason"]
