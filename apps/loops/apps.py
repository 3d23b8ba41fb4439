from django.apps import AppConfig


class LoopsConfig(AppConfig):
    name = "apps.loops"
    label = "loops"
    verbose_name = "Incremental-learning loops"

    def ready(self):
        from apps.jobs.signals import job_lost
        from apps.loops.services import retry_lost_training

        job_lost.connect(retry_lost_training, dispatch_uid="loops.retry_lost_training")
