"""Nth label saved → training job queued → training started, through the real event path.

    .venv/bin/python bench/trigger_latency.py [--firings 50] [--beat-firings 10] [--n 5]

Runs a real Celery worker (queues default and train, 2 processes, idle between firings) on
SQLite and the embedded Redis in a temporary var/. Each firing: a fake "latest trained version"
that saw every label (so the count starts at 0), N−1 labels saved through the datasets service,
a pause so their evaluations drain, then the Nth label; the clock starts when store_sample
returns (its transaction committed). "Queued" is the train Job row's created_at, "started" its
started_at (the worker claimed it). The training then fails at once (the fake version has no
archive), which frees the loop for the next firing. Beat is not running then. Afterwards the
same firings run with the label events switched off and `celery beat` started at the default
TRIGGER_CHECK_PERIOD_S (10 s): the path a lost event falls back to, measured in the same run.
Sedna's numbers are what its fixed polling gives (uniform wait over the period): p50 = P/2,
p99 = 0.99·P for P = 10 s and 60 s. Prints one table.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="ilportal-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "ilportal.settings"


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--firings", type=int, default=50)
    parser.add_argument("--n", type=int, default=5, help="the rule's label count")
    parser.add_argument(
        "--beat-firings", type=int, default=10, help="firings with events off (beat alone)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="firings first, reported apart (cold worker)"
    )
    args = parser.parse_args()

    import django

    from ilportal import embedded_redis

    redis = embedded_redis.start(Path(os.environ["VAR_DIR"]))
    worker = None
    try:
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        logs = Path(os.environ["VAR_DIR"]) / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ilportal", "worker", "-Q", "default,train",
             "-c", "2", "-l", "warning", "--without-mingle", "--without-gossip"],
            cwd=REPO, stdout=logs.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
        run(args, logs)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        redis.terminate()


def run(args, logs: Path) -> None:
    from django.conf import settings

    from apps.datasets.models import Sample
    from apps.datasets.services import create_dataset
    from apps.jobs.models import Job
    from apps.loops.models import Loop, ModelVersion, TrainedSample
    from apps.triggers.services import create_rule
    from tests.factories import make_sample

    dataset = create_dataset(name="bench", class_names=["helmet", "vest"])
    loop = Loop.objects.create(
        name="bench", dataset=dataset, algorithm_yaml="basemodel:\n  name: FPN\n"
    )
    rule = create_rule(loop, {"name": "n labels", "kind": "sample_count", "min_samples": args.n})
    seed = iter(range(10**6))

    def see_everything(number):
        version = ModelVersion.objects.create(
            loop=loop, number=number, source="trained", artifact="missing.zip",
            artifact_sha256="0" * 64, artifact_size=1, class_names=dataset.class_names,
        )  # fmt: skip
        pairs = Sample.objects.filter(dataset=dataset).values_list("id", "current_annotation_id")
        TrainedSample.objects.bulk_create(
            TrainedSample(version=version, sample_id=s, annotation_id=a) for s, a in pairs
        )

    def add_label():
        make_sample(dataset, next(seed), boxes=[("helmet", 1, 1, 20, 20)], split="train")

    pauses = random.Random(0)

    def measure(firings: int, offset: int, pause_s: float, random_phase_s: float = 0.0):
        queued, started = [], []
        deadline_s = 120
        for firing in range(offset + 1, offset + firings + 1):
            see_everything(firing)
            # With beat alone, the previous firing ended just after a tick: a random pause
            # puts the labels at a random phase of the period, as real labels would be.
            time.sleep(pauses.uniform(0, random_phase_s))
            for _ in range(args.n - 1):
                add_label()
            time.sleep(pause_s)  # the N−1 evaluations drain; the worker is idle again
            assert not Job.objects.filter(kind="train", status__in=["queued", "running"]).exists()
            add_label()
            saved = time.time()
            limit = time.monotonic() + deadline_s
            while True:
                job = (
                    Job.objects.filter(kind="train", params__rule_id=rule.pk)
                    .order_by("-id")
                    .first()
                )
                if job and job.params.get("firing_mark") is None and job.started_at:
                    break
                if time.monotonic() > limit:
                    raise SystemExit(
                        f"firing {firing}: no training in {deadline_s} s\n"
                        + logs.read_text()[-3000:]
                    )
                time.sleep(0.005)
            queued.append(job.created_at.timestamp() - saved)
            started.append(job.started_at.timestamp() - saved)
            while Job.objects.filter(pk=job.pk, status__in=["queued", "running"]).exists():
                time.sleep(0.05)
            Job.objects.filter(pk=job.pk).update(params={**job.params, "firing_mark": firing})
        return queued, started

    cold_queued, cold_started = measure(args.warmup, 0, 0.5)
    queued, started = measure(args.firings, args.warmup, 0.5)
    beat_rows = []
    if args.beat_firings:
        # The same firings with the events switched off: only celery beat finds the Nth label.
        from apps.triggers import listeners

        listeners.enqueue_evaluation = lambda rule_ids, cause: None
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ilportal", "beat", "-l", "warning",
             "-s", str(Path(os.environ["VAR_DIR"]) / "beat-schedule")],
            cwd=REPO, stdout=(logs.parent / "beat.log").open("w"), stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )  # fmt: skip
        try:
            beat_queued, beat_started = measure(
                args.beat_firings,
                args.warmup + args.firings,
                0.0,
                random_phase_s=settings.TRIGGER_CHECK_PERIOD_S,
            )
        finally:
            beat.terminate()
            beat.wait(timeout=30)
        beat_rows = [
            ("ilportal, beat only (no events): → queued", beat_queued),
            ("ilportal, beat only (no events): → started", beat_started),
        ]

    period = settings.TRIGGER_CHECK_PERIOD_S
    rows = [
        ("ilportal: label → training queued", queued),
        ("ilportal: label → training started", started),
        *beat_rows,
    ]
    print(
        f"{args.firings} firings by events, {args.beat_firings} by beat alone; N = {args.n}, "
        f"beat period {period} s (default)\n"
    )
    print(
        "| path | firings | p50 s | p99 s | max s | Sedna 10 s p50 ÷ this | Sedna 60 s p50 ÷ this |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in rows:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(
            f"| {name} | {len(values)} | {p50:.3f} | {p99:.3f} | {max(values):.3f} | "
            f"{5.0 / p50:.1f}× | {30.0 / p50:.1f}× |"
        )
    for sedna in (10, 60):
        print(
            f"| Sedna, fixed {sedna} s poll (uniform wait) | | {sedna / 2:.1f} | "
            f"{0.99 * sedna:.1f} | {sedna:.1f} | | |"
        )
    print(f"\nmean started: {statistics.mean(started):.3f} s")
    for index, (q, s) in enumerate(zip(cold_queued, cold_started, strict=True), start=1):
        print(f"warm-up firing {index} (not counted): queued {q:.3f} s, started {s:.3f} s")


if __name__ == "__main__":
    main()
