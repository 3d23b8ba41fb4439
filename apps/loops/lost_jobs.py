"""What a loop job had committed when its worker died (kill -9, out of memory, a lost node).

A deploy whose Deployment row exists did deploy; a training whose version is registered did
train. Such a job ends succeeded with a note (apps.jobs.services._mark_lost), not failed.
"""

from apps.jobs.models import Job
from apps.loops.models import Deployment, ModelVersion


def deploy_committed(job: Job) -> tuple[str, dict] | None:
    deployment = Deployment.objects.filter(job_id=job.pk).select_related("version", "previous")
    deployment = deployment.first()
    if deployment is None:
        return None
    previous = deployment.previous.label if deployment.previous else "nothing"
    note = (
        f"{deployment.action} of {deployment.version.label} done; its worker died after the deploy"
    )
    return note, {
        "deployed": deployment.version.label,
        "previous": previous,
        "action": deployment.action,
        "worker_died_after": True,
    }


def training_committed(job: Job) -> tuple[str, dict] | None:
    version = (
        ModelVersion.objects.filter(train_job_id=job.pk).select_related("loop", "parent").first()
    )
    if version is None:
        return None
    result = {
        "version_id": version.pk,
        "version": version.label,
        "parent": version.parent.label if version.parent_id else None,
        "new_samples": version.new_samples,
        "replay_samples": version.replay_samples,
        "snapshot_sha256": version.snapshot_sha256,
        "worker_died_after": True,
    }
    if version.loop.auto_evaluate:
        evaluation = (
            Job.objects.filter(kind="evaluate", params__version_id=version.pk)
            .exclude(params__has_key="sample_ids")
            .order_by("-pk")
            .first()
        )
        what = f"evaluate {version.label}"
        result["follow_up"] = (
            {"what": what, "started": True, "job_id": evaluation.pk}
            if evaluation is not None
            # Started by retry_skipped_evaluations (within a minute) while it is still needed.
            else {
                "what": what,
                "started": False,
                "reason": f"{what}: its training's worker died before starting it",
                "will_retry": True,
            }
        )
    return f"Registered {version.label}; its worker died after registering it", result
