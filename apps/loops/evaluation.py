"""The evaluation job: the version and the deployed one on the same data, then the gate."""

from django.db import transaction

from apps.jobs.models import Job, JobTrigger
from apps.jobs.runner import JobProgress
from apps.loops import ml_models, services
from apps.loops.gate import judge
from apps.loops.models import Deployment, Evaluation, EvaluationSet, ModelVersion, Stage
from apps.loops.training_data import (
    evaluation_snapshot,
    labeled_pairs,
    load_detection_data,
    snapshot_sha256,
)


def comparison_baseline(version: ModelVersion) -> ModelVersion | None:
    """What a version is judged against: the deployed version; for the deployed version itself
    (a re-evaluation), the version it replaced, so its comparison is not lost."""
    deployed = version.loop.deployed_version
    if deployed is None:
        return None
    if deployed.pk != version.pk:
        return deployed
    replaced = (
        Deployment.objects.filter(version=version, previous__isnull=False)
        .select_related("previous")
        .order_by("-created_at", "-id")
        .first()
    )
    return replaced.previous if replaced else None


def stored_metrics(version: ModelVersion, evaluation_set: str, data_sha256: str) -> dict | None:
    """The version's own metrics on exactly this data, if an earlier evaluation measured them:
    the model is deterministic, so measuring again would give the same numbers."""
    earlier = (
        Evaluation.objects.filter(
            version=version, evaluation_set=evaluation_set, data_sha256=data_sha256
        )
        .order_by("-created_at", "-id")
        .values_list("metrics", flat=True)
        .first()
    )
    return earlier


def run_evaluation(job: Job, progress: JobProgress) -> dict:
    version = ModelVersion.objects.select_related("loop__dataset", "loop__deployed_version").get(
        pk=job.params["version_id"]
    )
    loop = version.loop
    if job.params.get("sample_ids") is not None:
        return measure_on_samples(job, progress, version, job.params["sample_ids"])
    baseline = comparison_baseline(version)
    class_names = list(loop.dataset.class_names)
    progress.update(5, f"Loading {version.label}")
    candidate_model = ml_models.load_version(version)
    baseline_model = None  # loaded only when no stored metrics of the baseline fit the data
    measured: dict[str, tuple[dict, dict | None]] = {}
    image_counts: dict[str, int] = {}
    rows: list[Evaluation] = []  # written with the gate, once every set is measured
    try:
        sets = (EvaluationSet.EDGE, EvaluationSet.REGRESSION)
        for index, evaluation_set in enumerate(sets):
            pairs = evaluation_snapshot(loop.dataset_id, evaluation_set)
            if not pairs:
                progress.log(f"{EvaluationSet(evaluation_set).label}: no labeled samples yet")
                continue
            progress.update(10 + 40 * index, f"Evaluating on {len(pairs)} {evaluation_set} images")
            data_sha256 = snapshot_sha256(pairs)
            data = load_detection_data(pairs, class_names)
            metrics = ml_models.measure(candidate_model, data)
            baseline_metrics = None
            if baseline is not None:
                baseline_metrics = stored_metrics(baseline, evaluation_set, data_sha256)
                if baseline_metrics is not None:
                    progress.log(
                        f"{evaluation_set}: {baseline.label}'s stored metrics fit this data "
                        f"({data_sha256[:12]}): not measured again"
                    )
                else:
                    if baseline_model is None:
                        progress.log(f"Loading {baseline.label} to measure it on this data")
                        baseline_model = ml_models.load_version(baseline)
                    baseline_metrics = ml_models.measure(baseline_model, data)
            rows.append(
                Evaluation(
                    version=version,
                    job=job,
                    evaluation_set=evaluation_set,
                    image_count=len(pairs),
                    data_sha256=data_sha256,
                    metrics=metrics,
                    baseline=baseline,
                    baseline_metrics=baseline_metrics,
                )
            )
            measured[evaluation_set] = (metrics, baseline_metrics)
            image_counts[evaluation_set] = len(pairs)
            progress.log(
                f"{evaluation_set}: {version.label} mAP {metrics['mAP']:.3f} F1 {metrics['f1']:.3f}"
                + (
                    f" · {baseline.label} mAP {baseline_metrics['mAP']:.3f} "
                    f"F1 {baseline_metrics['f1']:.3f}"
                    if baseline_metrics
                    else ""
                )
            )
    finally:
        ml_models.discard(candidate_model)
        ml_models.discard(baseline_model)

    edge, baseline_edge = measured.get(EvaluationSet.EDGE, (None, None))
    regression, baseline_regression = measured.get(EvaluationSet.REGRESSION, (None, None))
    verdict = judge(
        services.gate_policy(loop),
        edge=edge,
        regression=regression,
        baseline_edge=baseline_edge,
        baseline_regression=baseline_regression,
        has_baseline=baseline is not None,
        edge_images=image_counts.get(EvaluationSet.EDGE),
    )
    version.gate_passed = verdict.passed
    version.gate_reasons = verdict.as_json()
    # One transaction: a job killed or failed half-way leaves no metrics of some sets next to a
    # gate judged on other data.
    with transaction.atomic():
        for row in rows:
            row.save()
        version.save(update_fields=["gate_passed", "gate_reasons"])
    for check in verdict.checks:
        progress.log(("✓ " if check.passed else "✗ ") + check.text)

    follow_up = None
    if verdict.passed and loop.auto_deploy and version.stage == Stage.CANDIDATE:
        # Not retried by itself: what blocked it may be a rollback, a person's decision that an
        # automatic deploy must not undo, also when it ended already (since the training
        # started). The version keeps its passed gate and Deploy button.
        overruled = services.person_moved_pointer_since(version)
        follow_up = (
            {
                "what": f"deploy {version.label}",
                "started": False,
                "reason": f"deploy {version.label}: {overruled}",
                "will_retry": False,
            }
            if overruled
            else services.start_follow_up(
                f"deploy {version.label}",
                "the gate passed",
                lambda: services.start_deploy(
                    version,
                    trigger=JobTrigger.RULE,
                    started_by=f"gate passed in evaluation job #{job.pk}",
                ),
                retry=False,
            )
        )
        progress.log(
            f"Gate passed: started deploy job #{follow_up['job_id']}"
            if follow_up["started"]
            else f"Not deployed: {follow_up['reason']}. Deploy it from its page when ready."
        )
    elif not verdict.passed:
        progress.log(f"Gate failed: {version.label} stays a candidate")
    return {
        "version": version.label,
        "baseline": baseline.label if baseline else None,
        "gate_passed": verdict.passed,
        "gate": verdict.as_json(),
        "deploy_job_id": follow_up.get("job_id") if follow_up else None,
        **({"follow_up": follow_up} if follow_up else {}),
    }


def measure_on_samples(job: Job, progress: JobProgress, version: ModelVersion, sample_ids) -> dict:
    """Metrics of `version` on exactly these labeled samples, in the job's result only: no
    Evaluation row and no gate (a precision trigger asked; the version's record stays as is)."""
    pairs = labeled_pairs(sample_ids)
    progress.update(10, f"Measuring {version.label} on {len(pairs)} given samples", force=True)
    model = ml_models.load_version(version)
    try:
        metrics = ml_models.measure(
            model, load_detection_data(pairs, version.loop.dataset.class_names)
        )
    finally:
        ml_models.discard(model)
    progress.log(
        f"{version.label} on {len(pairs)} samples: F1 {metrics['f1']:.3f} mAP {metrics['mAP']:.3f}"
    )
    return {"version": version.label, "metrics": metrics, "pairs": [list(p) for p in pairs]}
