"""Server time and query count of every main page at 100,000 samples and 1,000 versions.

``python bench/pages.py [--samples 100000] [--versions 1000] [--jobs 3000] [--repeat 5]
[--postgres postgres://postgres@127.0.0.1:5432/ilportal_dashboard_bench]
[--legacy-import-result]``

For each database (a fresh SQLite file, and PostgreSQL when --postgres is given; that database is
dropped and created again) a child process migrates, builds the portal with bulk inserts
(bench/page_data.py: rows only, one tiny shared image file), then requests every page in-process
through Django's test client as an admin: one warm-up, then the median of --repeat requests.
PostgreSQL gets ANALYZE after the bulk inserts, as autovacuum would.
Both databases are printed side by side in one table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]


def child(args) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.page_data import add_loop_activity, build

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    portal = build(
        samples=args.samples,
        versions=args.versions,
        jobs=args.jobs,
        legacy_import_result=args.legacy_import_result,
    )
    # What the loop sections show: 3 rules, 1,000 decisions, 20 devices, 20,000 intake records.
    add_loop_activity(portal, rules=3, decisions=1000, devices=20, intake=20_000)
    built_s = time.perf_counter() - started
    if connection.vendor == "postgresql":
        # What autovacuum does soon after bulk inserts; without statistics the planner takes
        # 100,000 rows for 71 and picks hash joins over index scans.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    user = get_user_model().objects.create_superuser("bench", password="bench-password-1")
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    loop, dataset, newest = portal.loop, portal.dataset, portal.versions[-1]
    older_than = dataset.samples.order_by("-id").values_list("id", flat=True)[args.samples // 20]
    pages = {
        "home": "/",
        "loops": "/loops/",
        "loop (1,000 versions)": f"/loops/{loop.pk}/",
        "loop, versions page 10": f"/loops/{loop.pk}/?page=10",
        "version (lineage 100k)": f"/loops/{loop.pk}/v{newest.number}/",
        "compare two versions": (
            f"/loops/{loop.pk}/compare/?a={newest.number - 1}&b={newest.number}"
        ),
        "jobs": "/jobs/",
        "jobs, filtered": f"/jobs/?kind=train&status=succeeded&loop={loop.pk}",
        "job (training)": f"/jobs/{portal.newest_job_id}/",
        "datasets": "/datasets/",
        "dataset": f"/datasets/{dataset.pk}/",
        "dataset, older →": f"/datasets/{dataset.pk}/?after={older_than}",
        "dataset, class vest": f"/datasets/{dataset.pk}/?class=vest",
        "dataset, class without boxes": f"/datasets/{dataset.pk}/?class=glove",
        "API datasets": "/api/v1/datasets/",
        "fleet": "/edge/",
    }
    rows = []
    for name, url in pages.items():
        client.get(url)
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - began)
            assert response.status_code == 200, (url, response.status_code)
        rows.append(
            {
                "page": name,
                "ms": statistics.median(times) * 1000,
                "queries": len(queries),
                "kb": len(response.content) / 1024,
            }
        )
    print(json.dumps({"vendor": connection.vendor, "built_s": built_s, "rows": rows}))


def run_child(args, database_url: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": tempfile.mkdtemp(prefix="ilportal-bench-pages-"),
        "MEDIA_ROOT": tempfile.mkdtemp(prefix="ilportal-bench-media-"),
        "DJANGO_SETTINGS_MODULE": "ilportal.settings",
    }
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--samples={args.samples}",
        f"--versions={args.versions}",
        f"--jobs={args.jobs}",
        f"--repeat={args.repeat}",
    ] + (["--legacy-import-result"] if args.legacy_import_result else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{database_url}: failed\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def recreate_postgres(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default="")
    parser.add_argument(
        "--legacy-import-result",
        action="store_true",
        help="give the import job one result line per image (9 MB at 100k), as before",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs = {"SQLite": run_child(args, f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")}
    if args.postgres:
        recreate_postgres(args.postgres)
        runs["PostgreSQL"] = run_child(args, args.postgres)
    names = list(runs)
    print(
        f"{args.samples:,} samples, {args.versions:,} versions, {args.jobs:,} jobs; "
        f"median of {args.repeat} requests after one warm-up; built in "
        + ", ".join(f"{n} {r['built_s']:.0f} s" for n, r in runs.items())
    )
    header = "| page | " + " | ".join(f"{n} ms | {n} queries" for n in names) + " | KB |"
    print(header)
    print("|---|" + "---:|---:|" * len(names) + "---:|")
    for index, row in enumerate(runs[names[0]]["rows"]):
        cells = []
        for name in names:
            other = runs[name]["rows"][index]
            cells.append(f"{other['ms']:.0f} | {other['queries']}")
        print(f"| {row['page']} | " + " | ".join(cells) + f" | {row['kb']:.0f} |")


if __name__ == "__main__":
    main()
