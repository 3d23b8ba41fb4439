"""Benchmark strategies through a real Celery worker: tiny images, 1 round, 2 strategies."""

import csv
import io

import pytest
from django.urls import reverse

from apps.jobs.models import Job, JobStatus
from apps.loops import benchmarks
from tests.loops.test_loop_e2e import wait_for

pytestmark = pytest.mark.slow

TINY = dict(
    rounds=1,
    stream_per_round=6,
    budget_ratio=0.5,
    input_size=64,
    initial_images=16,
    initial_steps=4,
    finetune_steps=3,
    gate_images=4,
    test_images=4,
)


def test_benchmark_job_runs_rounds_and_stores_a_ranked_leaderboard(
    live_portal, tiny_loop, admin_user, client
):
    job = benchmarks.start_benchmark(
        tiny_loop, user=admin_user, strategies=["Coverage", "Random"], seeds=[0], settings=TINY
    )
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status not in ("queued", "running"),
        live_portal,
        timeout_s=600,
        what="the benchmark job",
    )
    job = Job.objects.get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, f"{job.message}\n{job.log}"
    assert job.progress == 100

    rows = job.result["rows"]
    assert [(r["strategy"], r["round"]) for r in rows] == [("Coverage", 1), ("Random", 1)]
    # Equal budgets: half of the 6 streamed images each.
    assert all(r["labels"] == 3 for r in rows)
    assert all(0.0 <= r["edge_f1"] <= 1.0 and 0.0 <= r["edge_mAP"] <= 1.0 for r in rows)
    board = job.result["leaderboard"]
    assert sorted(e["strategy"] for e in board) == ["Coverage", "Random"]
    keys = [(-e["f1"], e["STR"]) for e in board]
    assert keys == sorted(keys) and [e["rank"] for e in board] == [1, 2]
    coverage = next(e for e in board if e["strategy"] == "Coverage")
    random_row = next(r for r in rows if r["strategy"] == "Random")
    assert coverage["f1_gain_by_seed"]["0"] == pytest.approx(
        100 * (coverage["f1"] - random_row["edge_f1"])
    )
    assert "Coverage · round 1" in job.log  # live progress lines, one per round

    client.force_login(admin_user)
    page = client.get(reverse("loops:benchmark", args=[tiny_loop.pk, job.pk]))
    assert page.status_code == 200 and b'data-testid="leaderboard"' in page.content
    download = client.get(reverse("loops:benchmark_csv", args=[tiny_loop.pk, job.pk]))
    lines = list(csv.reader(io.StringIO(download.content.decode())))
    assert [line[1] for line in lines[1:3]] == [e["strategy"] for e in board]
