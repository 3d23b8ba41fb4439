from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "apps.triggers"
    label = "triggers"
    verbose_name = "Trigger rules"

    def ready(self):
        from apps.datasets.events import labels_changed
        from apps.loops.events import deployed_pointer_moved
        from apps.triggers import listeners, loop_section

        labels_changed.connect(listeners.on_labels_changed, dispatch_uid="triggers.labels")
        deployed_pointer_moved.connect(
            listeners.on_deployed_pointer_moved, dispatch_uid="triggers.deployed"
        )
        loop_section.register()
