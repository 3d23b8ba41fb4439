from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "apps.labeling"
    label = "labeling"

    def ready(self):
        from apps.labeling import loop_section

        loop_section.register()
