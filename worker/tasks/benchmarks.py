"""Celery entry point of "Benchmark strategies" (train queue: it trains models)."""

from celery import shared_task

from apps.jobs.runner import run_job
from apps.loops.benchmarks import run_benchmark


# A 3-seed, all-strategy run takes about an hour on a small machine; six hours is a runaway.
@shared_task(
    name="ilportal.benchmark_strategies", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60
)
def benchmark_strategies(job_id: int) -> str | None:
    return run_job(job_id, benchmark_strategies.request.hostname, run_benchmark)
