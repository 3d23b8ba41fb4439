"""The training job: freeze the labeled set, fine-tune from the deployed version, register it."""

import os
import tempfile
import time

from apps.jobs.models import Job, JobTrigger
from apps.jobs.runner import JobProgress
from apps.loops import ml_models, overview, services
from apps.loops.models import Loop, ModelVersion, VersionSource
from apps.loops.training_data import (
    NoDataError,
    load_detection_data,
    snapshot_sha256,
    training_snapshot,
)


def _parent(loop: Loop) -> ModelVersion | None:
    """Training continues from the deployed version, else from the newest (the initial model)."""
    return loop.deployed_version or loop.versions.order_by("-number").first()


def eta_text(step: int, total: int, elapsed: float) -> str:
    """The time left, once enough steps ran for it to mean something (the first steps include
    start-up and graph tracing; an ETA from them would be far off)."""
    if step < max(3, total // 10) or step >= total or elapsed < 2:
        return ""
    left = elapsed / step * (total - step)
    return f" · about {left:.0f} s left" if left < 120 else f" · about {left / 60:.0f} min left"


def _first_training_night_look(params: dict) -> str:
    """The log's word on the first training's night look (FPN ``initial_night_augment``)."""
    share = params.get("initial_night_augment") or 0
    return f", {share:.0%} of the images with the night-mode look" if share > 0 else ""


def run_training(job: Job, progress: JobProgress) -> dict:
    loop = Loop.objects.select_related("dataset", "deployed_version").get(pk=job.params["loop_id"])
    pairs = training_snapshot(loop.dataset_id)
    if not pairs:
        raise NoDataError(f"Dataset {loop.dataset} has no labeled samples in its train split.")
    digest = snapshot_sha256(pairs)
    last_trained = loop.versions.filter(source=VersionSource.TRAINED).order_by("-number").first()
    if last_trained is not None and last_trained.snapshot_sha256 == digest:
        reason = (
            f"The labeled data is unchanged since {last_trained.label} "
            f"(snapshot {digest[:12]}): not trained again."
        )
        progress.log(reason)
        return {"skipped": True, "reason": reason, "snapshot_sha256": digest}

    parent = _parent(loop)
    progress.update(2, f"Preparing {len(pairs)} labeled samples", force=True)
    model = ml_models.load_version(parent) if parent else ml_models.build_model(loop)
    try:
        parent_pairs = services.trained_pairs(parent.pk) if parent else []
        earlier = set(parent_pairs)
        new_pairs = [pair for pair in pairs if pair not in earlier]
        replay_pairs = [pair for pair in pairs if pair in earlier]
        if not new_pairs:  # samples were removed or relabeled back: train on what is there
            new_pairs, replay_pairs = pairs, []
        class_names = list(loop.dataset.class_names)
        train_data = load_detection_data(new_pairs, class_names)
        replay_data = load_detection_data(replay_pairs, class_names) if replay_pairs else None
        night = "" if parent else _first_training_night_look(getattr(model, "params", {}))
        progress.log(
            f"Training from {parent.label if parent else 'scratch'} on {len(new_pairs)} new and "
            f"{len(replay_pairs)} replayed samples (snapshot {digest[:12]}){night}"
        )
        started = time.monotonic()

        def report(step: int, total: int, logs: dict) -> None:
            elapsed = time.monotonic() - started
            progress.update(
                5 + 85 * step / total,
                f"step {step}/{total} · loss {logs['loss']:.3f} · "
                f"{logs['images_per_second']:.0f} img/s" + eta_text(step, total, elapsed),
                point={"step": step, "loss": round(logs["loss"], 5), "epoch": logs["epoch"]},
            )

        model.train(train_data, progress=report, replay_data=replay_data)
        progress.update(92, "Writing the model archive and its LiteRT file", force=True)
        with tempfile.TemporaryDirectory(prefix=f"ilportal-train-{os.getpid()}-") as directory:
            archive = model.save(os.path.join(directory, "model.zip"), include_litert=True)
            version = services.register_version(
                loop,
                archive,
                source=VersionSource.TRAINED,
                parent=parent,
                train_job_id=job.pk,
                snapshot=[list(pair) for pair in pairs],
                snapshot_sha256=digest,
                new_samples=len(new_pairs),
                replay_samples=len(replay_pairs),
                train_summary={
                    **model.last_train_logs,
                    "seconds": time.monotonic() - started,
                    **(
                        {"changes": overview.changes_between(pairs, parent_pairs)} if parent else {}
                    ),
                },
            )
    finally:
        ml_models.discard(model)
    progress.log(f"Registered {version.label} as a candidate")
    follow_up = None
    if loop.auto_evaluate:
        follow_up = services.start_follow_up(
            f"evaluate {version.label}",
            "training registered it",
            lambda: services.start_evaluation(
                version, trigger=JobTrigger.RULE, started_by=f"after training job #{job.pk}"
            ),
            retry=True,
        )
        progress.log(
            f"Started evaluation job #{follow_up['job_id']}"
            if follow_up["started"]
            else f"Not started: {follow_up['reason']}; it starts when that one ends"
        )
    return {
        "version_id": version.pk,
        "version": version.label,
        "parent": parent.label if parent else None,
        "new_samples": len(new_pairs),
        "replay_samples": len(replay_pairs),
        "snapshot_sha256": digest,
        "loss": model.last_train_logs.get("loss"),
        **({"follow_up": follow_up} if follow_up else {}),
    }
