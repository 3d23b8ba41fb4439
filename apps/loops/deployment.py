"""The deploy job (deploy, rollback, forced): a smoke test in a fresh process, then the pointer."""

import os

from apps.edge.preparation import prepare_for_edge
from apps.jobs.models import Job
from apps.jobs.runner import JobProgress
from apps.loops import artifacts, services
from apps.loops.models import ModelVersion
from apps.loops.smoke_process import run_smoke_process


class SmokeTestFailed(Exception):
    pass


def smoke_test(archive_path: str, sha256: str) -> dict:
    """Loads and runs the archive in a new process."""
    report = run_smoke_process("worker.ml.smoke", archive_path, "--sha256", sha256)
    if not report.get("passed"):
        raise SmokeTestFailed("Smoke test failed: " + "; ".join(report.get("problems", [])))
    return report


def _deployable(version_id: int, action: str) -> ModelVersion:
    """The version as it is now, if `action` may still deploy it (LoopError fails the job)."""
    version = ModelVersion.objects.select_related("loop").get(pk=version_id)
    services.check_deployable(version, action)
    return version


def run_deploy(job: Job, progress: JobProgress) -> dict:
    action = job.params.get("action", "deploy")
    # Asked when the button was pressed; asked again now, and before the pointer moves, since an
    # evaluation may fail the gate while this job waits in its queue or runs the smoke test.
    version = _deployable(job.params["version_id"], action)
    progress.update(10, f"Fetching {version.label}", force=True)
    path = artifacts.fetch(version.artifact.name, version.artifact_sha256)
    try:
        progress.update(30, "Smoke test: load and predict in a fresh process", force=True)
        report = smoke_test(path, version.artifact_sha256)
    finally:
        os.remove(path)
    progress.log(f"Smoke test passed: {report['images']} images, {report['boxes']} boxes")
    progress.update(60, "LiteRT file for the edge: convert if missing, smoke test", force=True)
    edge = prepare_for_edge(version)
    progress.log(f"LiteRT file ready (sha256 {edge['litert_sha256'][:12]}…), smoke test passed")
    _deployable(version.pk, action)
    deployment = services.move_deployed_pointer(
        version.pk,
        action=action,
        started_by=job.started_by,
        reason=job.params.get("reason", ""),
        job_id=job.pk,
    )
    previous = deployment.previous.label if deployment.previous else "nothing"
    progress.log(f"{action}: {version.loop} now serves {version.label} (was {previous})")
    return {"deployed": version.label, "previous": previous, "action": action}
