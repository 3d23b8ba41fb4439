"""What kinds of job exist, which Celery task runs each, on which queue, and who may start it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    task_name: str
    queue: str
    start_permission: str
    # Kinds that need no input show a start button on the jobs page.
    on_jobs_page: bool = False
    # Dotted path of `f(job) -> (message, result) | None`: what such a job had committed when
    # its worker died. If it committed its effect, the lost job ends succeeded with these.
    committed_result: str = ""


SYSTEM_CHECK = JobKind(
    name="system_check",
    label="System check",
    task_name="ilportal.system_check",
    queue="default",
    start_permission="jobs.add_job",
    on_jobs_page=True,
)

DATASET_IMPORT = JobKind(
    name="dataset_import",
    label="Dataset import",
    task_name="ilportal.dataset_import",
    queue="default",
    start_permission="datasets.add_sample",
)

DATASET_EXPORT = JobKind(
    name="dataset_export",
    label="Dataset export",
    task_name="ilportal.dataset_export",
    queue="default",
    start_permission="datasets.view_dataset",
)

TRAIN = JobKind(
    name="train",
    label="Training",
    task_name="ilportal.train_version",
    queue="train",
    start_permission="loops.operate_loop",
    committed_result="apps.loops.lost_jobs.training_committed",
)

EVALUATE = JobKind(
    name="evaluate",
    label="Evaluation",
    task_name="ilportal.evaluate_version",
    queue="default",
    start_permission="loops.operate_loop",
)

DEPLOY = JobKind(
    name="deploy",
    label="Deploy",
    task_name="ilportal.deploy_version",
    queue="default",
    start_permission="loops.operate_loop",
    committed_result="apps.loops.lost_jobs.deploy_committed",
)

# Labeling strategies compared on a loop's algorithm (apps/loops/benchmarks.py): trains models,
# so it runs on the train queue.
BENCHMARK = JobKind(
    name="benchmark",
    label="Benchmark strategies",
    task_name="ilportal.benchmark_strategies",
    queue="train",
    start_permission="loops.operate_loop",
)

KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (SYSTEM_CHECK, DATASET_IMPORT, DATASET_EXPORT, TRAIN, EVALUATE, DEPLOY, BENCHMARK)
}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from None
