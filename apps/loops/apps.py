from django.apps import AppConfig


class LoopsConfig(AppConfig):
    name = "apps.loops"
    label = "loops"
    verbose_name = "Incremental-learning loops"
