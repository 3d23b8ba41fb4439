from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class EdgeConfig(AppConfig):
    name = "apps.edge"
    label = "edge"
    verbose_name = "Edge: inference, intake and fleet"

    def ready(self):
        from apps.edge import loop_section, serving
        from apps.loops.events import deployed_pointer_moved

        deployed_pointer_moved.connect(serving.forget_loop, dispatch_uid="edge-serving-swap")
        for sender in ("loops.Loop", "edge.IntakePolicy"):
            post_save.connect(serving.loops_changed, sender=sender, dispatch_uid=f"el.s.{sender}")
            post_delete.connect(serving.loops_changed, sender=sender, dispatch_uid=f"el.d.{sender}")
        loop_section.register()
