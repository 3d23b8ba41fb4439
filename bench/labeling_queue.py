"""Server time of the labeling queue at 100,000 queued samples (and the claim of a batch).

``python bench/labeling_queue.py [--samples 100000]`` fills a fresh database with queued samples
(hardness scores with 10 % missing, a prediction on 30 %; rows only, no image files), then times
the queue page in-process (Django's test client: URL routing, queries, template, no network) for
each order and a filter, the page reached through the keyset cursor, and claim_batch, and prints
a markdown table with the query count of each. The database is a fresh SQLite file; set
DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/ilportal_bench) for PostgreSQL (its tables
are dropped and made again).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="ilportal-bench-queue-"))
os.environ.setdefault("VAR_DIR", str(WORK / "var"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from apps.accounts.roles import sync_roles  # noqa: E402
from apps.datasets.models import Dataset, Sample  # noqa: E402
from apps.labeling import services  # noqa: E402

CLASSES = ["helmet", "vest", "cone"]


def fill(count: int) -> Dataset:
    dataset = Dataset.objects.create(name="bench-queue", class_names=CLASSES)
    rng = random.Random(0)
    batch = []
    for index in range(count):
        prediction = None
        if rng.random() < 0.3:
            prediction = [
                {"class_name": rng.choice(CLASSES), "score": round(rng.random(), 3),
                 "x1": 10, "y1": 10, "x2": 50, "y2": 60}
            ]  # fmt: skip
        batch.append(
            Sample(
                dataset=dataset,
                image=f"bench/{index}.jpg",
                sha256=f"{index:064x}",
                width=640,
                height=480,
                original_name=f"{index}.jpg",
                source=rng.choice(["device", "upload"]),
                split=rng.choice(["train", "train", "train", "eval", "test"]),
                status="queued",
                hardness_score=None if rng.random() < 0.1 else rng.random(),
                mined_by=rng.choice(["IBT", "Threshold", ""]),
                prediction=prediction,
            )
        )
        if len(batch) == 5000:
            Sample.objects.bulk_create(batch)
            batch = []
    Sample.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        # What autovacuum does soon after a bulk load in production (visibility map, stats).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE datasets_sample")
    return dataset


def timed(function, repeat: int) -> tuple[float, int]:
    function()  # warm caches (session, permissions, query plans)
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            function()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["*"]
    if connection.vendor == "postgresql":
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    sync_roles()
    started = time.perf_counter()
    dataset = fill(args.samples)
    fill_s = time.perf_counter() - started

    from django.contrib.auth.models import Group, User

    labeler = User.objects.create_user("bench-labeler", password="x")
    labeler.groups.add(Group.objects.get(name="labeler"))
    client = Client()
    client.force_login(labeler)
    url = f"/label/datasets/{dataset.pk}/"
    middle = services.queue_page(
        dataset.pk, services.QueueFilters(), size=args.samples // 2
    ).next_cursor

    def page(query):
        def get():
            response = client.get(url, query)
            assert response.status_code == 200, response.status_code

        return get

    rows = [
        ("queue page, hardness order (first page)", page({})),
        ("queue page, hardness order, halfway (keyset cursor)", page({"after": middle})),
        ("queue page, newest first", page({"order": "newest"})),
        ("queue page, random", page({"order": "random"})),
        ("queue page, predicted class = vest", page({"class": "vest"})),
        ("queue page, miner = IBT, split = train", page({"miner": "IBT", "split": "train"})),
    ]
    users = [User.objects.create_user(f"bench-{n}", password="x") for n in range(args.repeat + 1)]
    claimers = iter(users)
    rows.append(
        ("claim_batch of 5 (a new labeler each time)",
         lambda: services.claim_batch(dataset.pk, next(claimers), size=5))
    )  # fmt: skip
    print(
        f"\n{args.samples:,} queued samples on {connection.vendor} (filled in {fill_s:.1f} s), "
        f"median of {args.repeat}, server time in-process\n"
    )
    print("| request | ms | queries |\n|---|---:|---:|")
    for name, function in rows:
        ms, queries = timed(function, args.repeat)
        print(f"| {name} | {ms:.1f} | {queries} |")


if __name__ == "__main__":
    main()
