"""A big portal in seconds, by bulk inserts: one dataset of N labeled samples (rows only; every
sample points at one tiny shared image file), one loop of M versions with evaluations and
deployments, the lineage rows of the newest versions, and a history of jobs.

Used by bench/pages.py (100,000 samples, 1,000 versions) and, small, by the query-count tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CLASSES = ["helmet", "vest", "cone", "glove"]  # glove: a class without any box
CHUNK = 5000


@dataclass
class BigPortal:
    dataset: object
    loop: object
    versions: list
    newest_job_id: int
    import_job_id: int


def _metrics(rng: random.Random, level: float) -> dict:
    def value(spread=0.05):
        return max(0.0, min(1.0, level + rng.uniform(-spread, spread)))

    per_class = {}
    for name in CLASSES:
        gt = 0 if name == "glove" else rng.randint(20, 200)
        p, r = (value(), value()) if gt else (0.0, 0.0)
        f1 = 2 * p * r / (p + r) if gt and p + r else 0.0
        per_class[name] = {
            "precision": p,
            "recall": r,
            "f1": f1,
            "true_positives": int(gt * r),
            "false_positives": 3,
            "false_negatives": gt - int(gt * r),
            "ground_truth": gt,
        }
    overall = {name: value() for name in ("mAP", "AP50", "AP75", "AR100")}
    overall.update(
        precision=value(), recall=value(), f1=value(), macro_f1=value(), per_class=per_class
    )
    return overall


def build(
    *,
    samples: int,
    versions: int,
    lineage_versions: int = 3,
    jobs: int = 0,
    seed: int = 7,
    legacy_import_result: bool = False,
) -> BigPortal:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.models import OuterRef, Subquery

    from apps.datasets.models import Annotation, Box, Dataset, Sample
    from apps.jobs.models import Job
    from apps.loops.models import (
        Deployment,
        Evaluation,
        Loop,
        ModelVersion,
        TrainedSample,
    )
    from tests.factories import image_bytes

    rng = random.Random(seed)
    image_name = "bench/shared.png"
    if not default_storage.exists(image_name):
        default_storage.save(image_name, ContentFile(image_bytes(1)))

    dataset = Dataset.objects.create(name=f"big-{samples}", class_names=CLASSES)
    splits = ["train"] * 8 + ["eval", "test"]
    for start in range(0, samples, CHUNK):
        Sample.objects.bulk_create(
            [
                Sample(
                    dataset=dataset,
                    image=image_name,
                    sha256=f"{dataset.pk:08x}{i:056x}",
                    width=64,
                    height=48,
                    original_name=f"img{i}.png",
                    source="device" if i % 10 == 8 else "upload",
                    split=splits[i % 10],
                    status="labeled" if i % 7 else "queued",
                )
                for i in range(start, min(samples, start + CHUNK))
            ]
        )
    sample_ids = list(
        Sample.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True)
    )
    for start in range(0, len(sample_ids), CHUNK):
        chunk = sample_ids[start : start + CHUNK]
        Annotation.objects.bulk_create(
            [Annotation(sample_id=sid, revision=1, source="import") for sid in chunk]
        )
    relabeled = sample_ids[-500:]  # a second revision: relabeled since the previous version
    Annotation.objects.bulk_create(
        [Annotation(sample_id=sid, revision=2, source="manual") for sid in relabeled]
    )
    Sample.objects.filter(dataset=dataset).update(
        current_annotation_id=Subquery(
            Annotation.objects.filter(sample_id=OuterRef("pk"))
            .order_by("-revision")
            .values("id")[:1]
        )
    )
    annotations = list(
        Annotation.objects.filter(sample__dataset=dataset).values_list(
            "id", "sample_id", "revision"
        )
    )
    for start in range(0, len(annotations), CHUNK):
        Box.objects.bulk_create(
            [
                Box(annotation_id=aid, class_name=CLASSES[(sid + k) % 3], x1=1, y1=1, x2=20, y2=20)
                for aid, sid, _ in annotations[start : start + CHUNK]
                for k in range(1 + sid % 2)
            ]
        )
    first_revision = {sid: aid for aid, sid, rev in annotations if rev == 1}
    current = {sid: aid for aid, sid, rev in sorted(annotations, key=lambda a: a[2])}

    loop = Loop.objects.create(name=f"big-loop-{samples}", dataset=dataset, algorithm_yaml="x: 1\n")
    made = ModelVersion.objects.bulk_create(
        [
            ModelVersion(
                loop=loop,
                number=n,
                source="trained" if n > 1 else "uploaded",
                artifact=f"models/none-{n}.zip",
                artifact_sha256=f"{n:064x}",
                artifact_size=1000 + n,
                class_names=CLASSES,
                snapshot_sha256=f"{n:064x}",
                new_samples=100,
                replay_samples=max(0, samples - 100),
                algorithm_yaml=f"basemodel:\n  name: FPN\n  learning_rate: {0.001 * (1 + n % 3)}\n",
                hyperparameters={"learning_rate": 0.001 * (1 + n % 3), "max_iteration": 100},
                stage="archived" if n < versions else "candidate",
                gate_passed=True,
                gate_reasons=[{"passed": True, "text": "f1 0.700 ≥ 0.600"}],
            )
            for n in range(1, versions + 1)
        ]
    )
    made = list(ModelVersion.objects.filter(loop=loop).order_by("number"))
    for previous, version in zip(made, made[1:], strict=False):
        version.parent_id = previous.pk
    ModelVersion.objects.bulk_update(made[1:], ["parent"], batch_size=CHUNK)
    deployed = made[-2] if len(made) > 1 else made[-1]
    ModelVersion.objects.filter(pk=deployed.pk).update(stage="deployed")
    Loop.objects.filter(pk=loop.pk).update(deployed_version=deployed)

    evaluations = []
    for index, version in enumerate(made):
        level = 0.3 + 0.4 * index / max(1, len(made))
        for evaluation_set in ("edge", "regression"):
            evaluations.append(
                Evaluation(
                    version=version,
                    evaluation_set=evaluation_set,
                    image_count=samples // 10,
                    data_sha256=f"{evaluation_set[0]}{index // 10:063x}",
                    metrics=_metrics(rng, level),
                    baseline=made[index - 1] if index else None,
                    baseline_metrics=_metrics(rng, level - 0.01) if index else None,
                )
            )
    Evaluation.objects.bulk_create(evaluations, batch_size=2000)
    Deployment.objects.bulk_create(
        [
            Deployment(
                loop=loop,
                version=version,
                previous=made[i - 1] if i else None,
                action="deploy",
                started_by="gate passed",
            )
            for i, version in enumerate(made[:-1])
        ][-50:]
    )

    # Lineage of the newest versions: all labeled train samples; the newest on the new revisions.
    train_ids = [sid for i, sid in enumerate(sample_ids) if splits[i % 10] == "train" and i % 7]
    for offset, version in enumerate(made[-lineage_versions:]):
        newest = offset == lineage_versions - 1
        # each version adds the next 100 train samples to its parent's
        chosen = train_ids[: max(0, len(train_ids) - 100 * (lineage_versions - 1 - offset))]
        lookup = current if newest else first_revision
        for start in range(0, len(chosen), CHUNK):
            TrainedSample.objects.bulk_create(
                [
                    TrainedSample(version=version, sample_id=sid, annotation_id=lookup[sid])
                    for sid in chosen[start : start + CHUNK]
                ]
            )

    history = []
    for i in range(jobs):
        version = made[i % len(made)]
        kind = ("train", "evaluate", "deploy")[i % 3]
        history.append(
            Job(
                kind=kind,
                status="succeeded" if i % 11 else "failed",
                trigger="rule",
                scope=loop.job_scope,
                progress=100,
                message="done",
                params={"loop_id": loop.pk, "version_id": version.pk},
                result={"version_id": version.pk, "version": version.label}
                | (
                    {"skipped": True, "reason": "unchanged"}
                    if i % 13 == 0 and kind == "train"
                    else {}
                ),
                chart=[{"step": s, "loss": 1 / (s + 1)} for s in range(200)],
                log="step\n" * 200,
                started_by="rule",
            )
        )
    Job.objects.bulk_create(history, batch_size=2000)
    # The import job of the dataset. Its result is a bounded summary (the full report is a file),
    # unless legacy_import_result: one line per image, as imports wrote before (9 MB at 100k).
    if legacy_import_result:
        result = {
            "lines": [
                {"name": f"img{i}.png", "outcome": "accepted", "detail": "stored as sample"}
                for i in range(samples)
            ]
        }
    else:
        result = {"counts": {"accepted": samples}, "first_problems": [], "report": "report.csv"}
    big = Job.objects.create(
        kind="dataset_import",
        status="succeeded",
        trigger="manual",
        scope=f"dataset:{dataset.pk}",
        progress=100,
        started_by="bench",
        params={"dataset_id": dataset.pk},
        result=result,
    )
    newest_job = Job.objects.filter(kind="train").order_by("-id").first()
    return BigPortal(
        dataset=dataset,
        loop=loop,
        versions=made,
        newest_job_id=newest_job.pk if newest_job else big.pk,
        import_job_id=big.pk,
    )


def add_loop_activity(
    portal: BigPortal,
    *,
    loops: int = 1,
    rules: int = 3,
    decisions: int = 10,
    devices: int = 2,
    intake: int = 20,
    seed: int = 7,
) -> list:
    """What the loop sections show, on the portal's loop and on `loops - 1` more loops of its
    dataset: trigger rules of every kind (sample-count ones with and without a class), their
    decisions, devices (one of them silent for two hours) and intake records over the last
    days. Returns the loops."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts.models import DeviceToken
    from apps.edge.models import EdgeDevice, IntakeRecord
    from apps.loops.models import Loop
    from apps.triggers.models import Decision, TriggerRule

    rng = random.Random(seed)
    now = timezone.now()
    all_loops = [portal.loop] + [
        Loop.objects.create(
            name=f"{portal.loop.name}-{n}", dataset=portal.dataset, algorithm_yaml="x: 1\n"
        )
        for n in range(1, loops)
    ]
    for loop in all_loops:
        made_rules = []
        for n in range(rules):
            kind = ("sample_count", "time", "precision")[n % 3]
            made_rules.append(
                TriggerRule.objects.create(
                    loop=loop,
                    name=f"rule-{n}",
                    kind=kind,
                    anchor_at=now - timedelta(hours=1),
                    min_samples=50 * (n + 1) if kind == "sample_count" else None,
                    class_name="vest" if kind == "sample_count" and n % 2 else "",
                    every=30 if kind == "time" else None,
                    metric="f1" if kind == "precision" else "",
                    comparison="below" if kind == "precision" else "",
                    threshold=0.7 if kind == "precision" else None,
                    min_fresh_samples=20 if kind == "precision" else None,
                    last_message="f1 0.712 on 40 fresh samples ≥ 0.7"
                    if kind == "precision"
                    else "",
                )
            )
        Decision.objects.bulk_create(
            Decision(
                rule=made_rules[n % len(made_rules)],
                at=now - timedelta(minutes=decisions - n),
                cause="beat",
                verdict=("waiting", "suppressed", "fired")[n % 3],
                reason=("below_count", "cooldown", "condition_met")[n % 3],
                message=f"decision {n}",
            )
            for n in range(decisions)
        )
        made_devices = []
        for n in range(devices):
            token = DeviceToken.objects.create(
                name=f"cam-{loop.pk}-{n}",
                prefix=f"p{loop.pk}x{n}",
                token_sha256=f"{loop.pk:032x}{n:032x}",
            )
            made_devices.append(
                EdgeDevice.objects.create(
                    token=token,
                    loop=loop,
                    last_seen_at=now - timedelta(hours=2 if n == 0 else 0),
                    images_sent=rng.randint(50, 500),
                    hard_sent=rng.randint(5, 50),
                )
            )
        IntakeRecord.objects.bulk_create(
            IntakeRecord(
                loop=loop,
                device=made_devices[n % len(made_devices)] if made_devices else None,
                outcome=("queued", "queued", "duplicate", "over_budget", "stored")[n % 5],
                image_hash=rng.getrandbits(63),
                hard=n % 5 != 4,
                hardness=rng.random(),
            )
            for n in range(intake)
        )
        # created_at is auto_now_add: spread the records over the last week afterwards.
        ids = list(
            IntakeRecord.objects.filter(loop=loop).order_by("id").values_list("id", flat=True)
        )
        for back in range(1, 7):
            IntakeRecord.objects.filter(pk__in=ids[back::7]).update(
                created_at=now - timedelta(days=back)
            )
    return all_loops
