"""Verbs on loops and model versions: create, add an initial model, train, evaluate, deploy."""

import json
import os
import re
import shutil
import tempfile
from urllib.parse import urlparse

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Max
from django.utils import timezone

from apps.datasets.models import Dataset, Sample
from apps.jobs import services as jobs
from apps.jobs.models import Job, JobTrigger
from apps.loops import artifacts
from apps.loops.events import announce_deployed_pointer_moved
from apps.loops.gate import GatePolicy, GatePolicyError
from apps.loops.models import (
    Deployment,
    DeploymentAction,
    Loop,
    ModelVersion,
    Stage,
    TrainedSample,
    VersionSource,
)


class LoopError(Exception):
    """Bad input to a loop verb; the message is meant for the user."""


# --- Loops -----------------------------------------------------------------------------------


def default_algorithm_yaml(class_names: list[str] | None = None) -> str:
    from worker.ml.config import DEFAULT_ALGORITHM_PATH

    text = DEFAULT_ALGORITHM_PATH.read_text()
    if class_names:
        # JSON strings are valid YAML, whatever characters a class name holds.
        listed = ", ".join(json.dumps(name) for name in class_names)
        text = re.sub(r"class_names: \[[^\]]*\]", f"class_names: [{listed}]", text, count=1)
    return text


def check_algorithm_yaml(text: str, class_names: list[str]):
    """The validated AlgorithmConfig; LoopError names the field that is wrong."""
    from worker.ml.config import load_algorithm_config
    from worker.ml.errors import ConfigError, RegistryError

    try:
        # Only the operator's plugin modules: a plugin is imported (its code runs) in the web
        # process and every worker, so the YAML of a form may not name any module or file.
        config = load_algorithm_config(text, allowed_plugins=settings.ALGORITHM_PLUGINS)
    except (ConfigError, RegistryError) as exc:
        raise LoopError(f"Algorithm YAML: {exc}") from exc
    yaml_classes = config.basemodel.hyperparameters.get("class_names")
    if yaml_classes is not None and list(yaml_classes) != list(class_names):
        raise LoopError(
            f"Algorithm YAML: class_names {yaml_classes} differ from the dataset's "
            f"{class_names}; use the dataset's or leave class_names out."
        )
    return config


def gate_policy(loop: Loop) -> GatePolicy:
    return GatePolicy(
        min_metrics=loop.gate_min_metrics,
        min_gain=loop.gate_min_gain,
        per_class_gain=loop.gate_per_class_gain,
        max_forgetting=loop.gate_max_forgetting,
        min_edge_images=loop.gate_min_edge_images,
    )


def create_loop(*, name: str, dataset: Dataset, algorithm_yaml: str = "", user=None, **options):
    name = name.strip()
    if not name:
        raise LoopError("A loop needs a name.")
    if Loop.objects.filter(name=name).exists():
        raise LoopError(f"A loop named {name!r} already exists.")
    if not dataset.class_names:
        raise LoopError(f"Dataset {dataset} has no classes yet.")
    try:
        with transaction.atomic():  # a savepoint, so a caller's transaction survives the refusal
            return update_loop(
                Loop(name=name, dataset=dataset, created_by=user),
                algorithm_yaml=algorithm_yaml,
                **options,
            )
    except IntegrityError:
        # Two requests with one name (a double click, two tabs): both passed the check above, the
        # unique index let one in; the other is told why, not answered 500.
        if Loop.objects.filter(name=name).exists():
            raise LoopError(f"A loop named {name!r} already exists.") from None
        raise


# The default YAML is about 1.3 kB. Every version keeps a copy of its loop's YAML and the loops
# list, the API and the compare page's diff carry it, so a megabyte of comments is refused.
MAX_ALGORITHM_YAML_CHARS = 64 * 1024


def update_loop(loop: Loop, *, algorithm_yaml: str, **fields) -> Loop:
    """Validates and saves. New settings apply to the next job: jobs read the loop at start."""
    if len(algorithm_yaml) > MAX_ALGORITHM_YAML_CHARS:
        raise LoopError(
            f"Algorithm YAML: at most {MAX_ALGORITHM_YAML_CHARS:,} characters, "
            f"got {len(algorithm_yaml):,}."
        )
    algorithm_yaml = algorithm_yaml.strip() or default_algorithm_yaml(loop.dataset.class_names)
    check_algorithm_yaml(algorithm_yaml, loop.dataset.class_names)
    loop.algorithm_yaml = algorithm_yaml
    for name, value in fields.items():
        setattr(loop, name, value)
    try:
        gate_policy(loop)
    except GatePolicyError as exc:
        raise LoopError(f"Deploy gate: {exc}") from exc
    loop.save()
    return loop


# --- Versions --------------------------------------------------------------------------------


def next_version_number(loop_id: int) -> int:
    current = ModelVersion.objects.filter(loop_id=loop_id).aggregate(n=Max("number"))["n"]
    return (current or 0) + 1


def _check_archive(path: str, class_names: list[str]) -> dict:
    """Reads the archive's config after verifying its manifest; refuses other classes."""
    from worker.ml.errors import MLError
    from worker.ml.fpn import read_archive

    try:
        config, extracted = read_archive(path, None)
    except MLError as exc:
        raise LoopError(f"Not a usable model archive: {exc}") from exc
    shutil.rmtree(extracted, ignore_errors=True)
    if list(config.get("class_names", [])) != list(class_names):
        raise LoopError(
            f"The model predicts {config.get('class_names')}, the dataset has {class_names}."
        )
    return config


def register_version(
    loop: Loop,
    archive_path: str,
    *,
    source: str,
    user=None,
    parent: ModelVersion | None = None,
    train_job_id: int | None = None,
    snapshot: list | None = None,
    snapshot_sha256: str = "",
    new_samples: int = 0,
    replay_samples: int = 0,
    train_summary: dict | None = None,
    source_uri: str = "",
) -> ModelVersion:
    """Stores the archive (and its LiteRT file) and records a candidate version.

    If recording fails, the stored files are deleted again: no artifact without its row.
    """
    config = _check_archive(archive_path, loop.dataset.class_names)
    folder = f"models/loop-{loop.pk}"
    stored = artifacts.store_file(archive_path, folder, "-model.zip")
    litert = None
    try:
        litert = artifacts.store_litert_from_archive(archive_path, folder)
        with transaction.atomic():
            Loop.objects.select_for_update().get(pk=loop.pk)  # serialises version numbers
            version = ModelVersion.objects.create(
                loop=loop,
                number=next_version_number(loop.pk),
                source=source,
                parent=parent,
                train_job_id=train_job_id,
                artifact=stored.name,
                artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                litert=litert.name if litert else "",
                litert_sha256=litert.sha256 if litert else "",
                class_names=config["class_names"],
                snapshot_sha256=snapshot_sha256,
                new_samples=new_samples,
                replay_samples=replay_samples,
                algorithm_yaml=loop.algorithm_yaml,
                hyperparameters=config.get("hyperparameters", {}),
                train_summary=train_summary or {},
                source_uri=source_uri,
                created_by=user,
            )
            _record_trained_samples(version, snapshot or [])
            return version
    except BaseException:
        artifacts.delete_quietly(stored.name, litert.name if litert else "")
        raise


def trained_pairs(version_id: int) -> list[tuple[int, int]]:
    """The (sample id, annotation id) pairs a version was trained on, in sample order."""
    rows = TrainedSample.objects.filter(version_id=version_id).order_by("sample_id")
    return list(rows.values_list("sample_id", "annotation_id"))


def _record_trained_samples(version: ModelVersion, snapshot: list) -> None:
    sample_ids = [sample_id for sample_id, _ in snapshot]
    present = set()
    for start in range(0, len(sample_ids), 2000):  # SQLite caps the parameters of one query
        chunk = sample_ids[start : start + 2000]
        present.update(Sample.objects.filter(pk__in=chunk).values_list("pk", flat=True))
    gone = len(set(sample_ids) - present)
    if gone:
        raise LoopError(
            f"{gone} sample(s) of the training snapshot were deleted while it trained: "
            "the version would lack its lineage. Train again."
        )
    TrainedSample.objects.bulk_create(
        (
            TrainedSample(version=version, sample_id=sample_id, annotation_id=annotation_id)
            for sample_id, annotation_id in snapshot
        ),
        batch_size=2000,
    )


def add_uploaded_version(loop: Loop, uploaded_file, *, user=None) -> ModelVersion:
    with tempfile.TemporaryDirectory(prefix="ilportal-upload-") as directory:
        path = os.path.join(directory, "model.zip")
        with open(path, "wb") as local:
            for chunk in uploaded_file.chunks():
                local.write(chunk)
        return register_version(loop, path, source=VersionSource.UPLOADED, user=user)


def import_version_from_object_storage(loop: Loop, uri: str, *, user=None) -> ModelVersion:
    """s3://bucket/key through the configured endpoint and credentials (OBS, MinIO, AWS)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri.strip())
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise LoopError("Give the model's location as s3://bucket/path/to/model.zip")
    client = boto3.client(
        "s3",
        endpoint_url=settings.S3_ENDPOINT_URL or None,
        aws_access_key_id=settings.S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY or None,
        region_name=settings.S3_REGION or None,
    )
    with tempfile.TemporaryDirectory(prefix="ilportal-import-") as directory:
        path = os.path.join(directory, "model.zip")
        try:
            client.download_file(parsed.netloc, parsed.path.lstrip("/"), path)
        except (BotoCoreError, ClientError) as exc:
            raise LoopError(f"Could not fetch {uri}: {exc}") from exc
        return register_version(
            loop, path, source=VersionSource.IMPORTED, user=user, source_uri=uri
        )


def delete_version(version_id: int) -> None:
    version = ModelVersion.objects.select_related("loop").get(pk=version_id)
    if version.stage in (Stage.DEPLOYED, Stage.ARCHIVED) or version.deployments.exists():
        raise LoopError(f"{version.label} is or was deployed: its record stays for the history.")
    if version.children.exists():
        raise LoopError(f"{version.label} is the parent of later versions: it stays for lineage.")
    names = (version.artifact.name, version.litert.name)
    version.delete()
    transaction.on_commit(lambda: artifacts.delete_quietly(*names))


# --- Jobs ------------------------------------------------------------------------------------


def _start(kind: str, loop: Loop, *, user, trigger: str, started_by: str, params: dict) -> Job:
    return jobs.start_job(
        kind,
        user=user,
        trigger=trigger,
        started_by=started_by,
        scope=loop.job_scope,
        params={"loop_id": loop.pk, **params},
    )


def start_training(loop: Loop, *, user=None, trigger=JobTrigger.MANUAL, started_by="", **params):
    return _start("train", loop, user=user, trigger=trigger, started_by=started_by, params=params)


def start_evaluation(
    version: ModelVersion, *, user=None, trigger=JobTrigger.MANUAL, started_by="", **params
):
    """`sample_ids=[...]`: measure only on those samples (a precision trigger's fresh set)."""
    return _start(
        "evaluate",
        version.loop,
        user=user,
        trigger=trigger,
        started_by=started_by,
        params={"version_id": version.pk, **params},
    )


MAX_REASON_CHARS = 2000


def start_deploy(
    version: ModelVersion,
    *,
    user=None,
    action: str = DeploymentAction.DEPLOY,
    reason: str = "",
    trigger=JobTrigger.MANUAL,
    started_by: str = "",
) -> Job:
    loop = version.loop
    reason = reason.strip()
    # The reason is kept in the job's params (every jobs list shows them) and the Deployment row;
    # PostgreSQL stores no NUL character in either (a 500 from the page, whose form does not
    # refuse it as the API's serializer does).
    if "\x00" in reason:
        raise LoopError("A reason may not contain NUL characters.")
    if len(reason) > MAX_REASON_CHARS:
        raise LoopError(f"A reason of at most {MAX_REASON_CHARS:,} characters, please.")
    if action == DeploymentAction.FORCE:
        if not reason:
            raise LoopError("A forced deploy needs a written reason.")
        if user is not None and not user.has_perm("loops.force_deploy"):
            raise jobs.JobPermissionDenied("Only admins may force a deploy.")
    check_deployable(version, action)
    return _start(
        "deploy",
        loop,
        user=user,
        trigger=trigger,
        started_by=started_by,
        params={"version_id": version.pk, "action": action, "reason": reason},
    )


def check_deployable(version: ModelVersion, action: str) -> None:
    """LoopError when `action` may not move the pointer to `version` now. The button asks, and
    the deploy job asks again before it moves the pointer: while the job waited in its queue an
    evaluation may have failed the version's gate, or the pointer moved."""
    if version.loop.deployed_version_id == version.pk:
        raise LoopError(f"{version.label} is already deployed.")
    if action == DeploymentAction.DEPLOY and version.gate_passed is not True:
        raise LoopError(
            f"{version.label} has not passed its gate"
            + (f": {'; '.join(version_failures(version))}" if version.gate_passed is False else "")
            + ". Evaluate it, or force the deploy with a reason."
        )
    if action == DeploymentAction.ROLLBACK and not version.deployments.exists():
        raise LoopError(f"{version.label} was never deployed: roll back to an earlier version.")


# --- Follow-ups: the job after a job (evaluate after training, deploy after a passed gate) ------


def _describe_blocker(active: Job) -> str:
    if active.kind == "deploy":
        action = active.params.get("action", "deploy")
        article = "an" if action[0] in "aeiou" else "a"
        return f"{article} {action} was {active.status} (job #{active.pk})"
    return f"{active.kind} job #{active.pk} was {active.status}"


def start_follow_up(what: str, why: str, start, *, retry: bool) -> dict:
    """Starts the next job of a successful one. A refusal (another job of that kind is active,
    the broker is away) does not undo the work already done: it is recorded with its reason, and
    retried later (`retry`) or left as an offer on the version's page."""
    try:
        follow_up = start()
    except jobs.JobError as exc:
        blocker = _describe_blocker(exc.job) if isinstance(exc, jobs.JobAlreadyActive) else str(exc)
        return {
            "what": what,
            "started": False,
            "reason": f"{what}: {why}; {blocker}",
            "will_retry": retry,
        }
    except LoopError as exc:  # the version changed in between (deployed, deleted gate...)
        return {"what": what, "started": False, "reason": f"{what}: {exc}", "will_retry": False}
    return {"what": what, "started": True, "job_id": follow_up.pk}


def person_moved_pointer_since(version: ModelVersion) -> str | None:
    """Why an automatic deploy of `version` would undo a person's decision, else None: a
    rollback, or a deploy not started by a passed gate, since its training started (since it was
    added, for a version not trained here)."""
    train_job = version.train_job
    since = (train_job.started_at or train_job.created_at) if train_job else version.created_at
    moved = (
        Deployment.objects.filter(loop_id=version.loop_id, created_at__gt=since)
        .filter(
            models.Q(action=DeploymentAction.ROLLBACK) | ~models.Q(job__trigger=JobTrigger.RULE)
        )
        .select_related("version")
        .order_by("-created_at", "-id")
        .first()
    )
    if moved is None:
        return None
    verb = {
        DeploymentAction.ROLLBACK: "was rolled back to",
        DeploymentAction.FORCE: "was force-deployed",
    }.get(moved.action, "was deployed")
    who = moved.started_by.removeprefix("user:")
    at = timezone.localtime(moved.created_at)
    return f"{moved.version.label} {verb} at {at:%H:%M} by {who}"


def skipped_follow_up(version: ModelVersion) -> dict | None:
    """The newest follow-up of this version that could not start (offered on its page)."""
    job = (
        Job.objects.filter(
            kind__in=("train", "evaluate"),
            status="succeeded",
            scope=version.loop.job_scope,
            result__follow_up__started=False,
        )
        .filter(models.Q(params__version_id=version.pk) | models.Q(result__version_id=version.pk))
        .order_by("-pk")
        .first()
    )
    return job.result["follow_up"] if job else None


def retry_skipped_evaluations() -> list[int]:
    """Evaluations that a finished training could not start (another evaluation was running)
    start once nothing blocks them; returns the started jobs' ids."""
    started = []
    pending = Job.objects.filter(
        kind="train",
        status="succeeded",
        result__follow_up__started=False,
        result__follow_up__will_retry=True,
    )
    for train_job in pending:
        note = train_job.result["follow_up"]
        version = ModelVersion.objects.filter(pk=train_job.result.get("version_id")).first()
        if version is None or version.stage != Stage.CANDIDATE or version.gate_passed is not None:
            note.update(will_retry=False, reason=note["reason"] + " (no longer needed)")
        else:
            retried = start_follow_up(
                note["what"],
                "retried",
                lambda version=version, train_job=train_job: start_evaluation(
                    version,
                    trigger=JobTrigger.RULE,
                    started_by=f"after training job #{train_job.pk} (retried)",
                ),
                retry=True,
            )
            if not retried["started"]:
                continue
            note.update(started=True, job_id=retried["job_id"], will_retry=False)
            started.append(retried["job_id"])
        Job.objects.filter(pk=train_job.pk).update(result={**train_job.result, "follow_up": note})
    return started


def retry_lost_training(sender, job: Job, **kwargs) -> Job | None:
    """A training whose worker died starts again when its loop says so (once per lost job)."""
    if job.kind != "train" or job.params.get("retry_of"):
        return None
    loop = Loop.objects.filter(pk=job.params.get("loop_id"), retry_lost_jobs=True).first()
    if loop is None:
        return None
    return start_training(
        loop,
        trigger=JobTrigger.RULE,
        started_by=f"retry of job #{job.pk} (its worker died)",
        retry_of=job.pk,
    )


def version_failures(version: ModelVersion) -> list[str]:
    return [check["text"] for check in version.gate_reasons if not check["passed"]]


def move_deployed_pointer(
    version_id: int, *, action: str, started_by: str, reason: str, job_id: int | None
) -> Deployment:
    """The deploy itself: one transaction moves the pointer and records the move."""
    with transaction.atomic():
        version = ModelVersion.objects.select_related("loop").get(pk=version_id)
        loop = Loop.objects.select_for_update().get(pk=version.loop_id)
        previous = loop.deployed_version
        if previous is not None and previous.pk != version.pk:
            previous.stage = Stage.ARCHIVED
            previous.save(update_fields=["stage"])
        version.stage = Stage.DEPLOYED
        version.save(update_fields=["stage"])
        loop.deployed_version = version
        loop.save(update_fields=["deployed_version"])
        deployment = Deployment.objects.create(
            loop=loop,
            version=version,
            previous=previous,
            action=action,
            started_by=started_by,
            reason=reason,
            job_id=job_id,
        )
        announce_deployed_pointer_moved(
            loop_id=loop.pk,
            version_id=version.pk,
            previous_version_id=previous.pk if previous else None,
            action=action,
            deployment_id=deployment.pk,
        )
        return deployment
