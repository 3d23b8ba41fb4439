from django.apps import AppConfig


class EdgeConfig(AppConfig):
    name = "apps.edge"
    label = "edge"
    verbose_name = "Edge: inference, intake and fleet"

    def ready(self):
        from apps.edge import loop_section, serving
        from apps.loops.events import deployed_pointer_moved

        deployed_pointer_moved.connect(serving.forget_loop, dispatch_uid="edge-serving-swap")
        loop_section.register()
