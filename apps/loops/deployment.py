"""The deploy job (deploy, rollback, forced): a smoke test in a fresh process, then the pointer."""

import json
import os
import subprocess
import sys

from django.conf import settings

from apps.edge.preparation import prepare_for_edge
from apps.jobs.models import Job
from apps.jobs.runner import JobProgress
from apps.loops import artifacts, services
from apps.loops.models import ModelVersion

SMOKE_TEST_TIMEOUT_S = 300


class SmokeTestFailed(Exception):
    pass


def smoke_test(archive_path: str, sha256: str) -> dict:
    """Loads and runs the archive in a new process: a broken model cannot take this one down."""
    completed = subprocess.run(
        [sys.executable, "-m", "worker.ml.smoke", archive_path, "--sha256", sha256],
        capture_output=True,
        text=True,
        timeout=SMOKE_TEST_TIMEOUT_S,
        cwd=settings.BASE_DIR,
    )
    lines = completed.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {"passed": False, "problems": [completed.stderr.strip()[-500:] or "no output"]}
    if completed.returncode != 0 or not report.get("passed"):
        raise SmokeTestFailed("Smoke test failed: " + "; ".join(report.get("problems", [])))
    return report


def run_deploy(job: Job, progress: JobProgress) -> dict:
    version = ModelVersion.objects.select_related("loop").get(pk=job.params["version_id"])
    action = job.params.get("action", "deploy")
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
