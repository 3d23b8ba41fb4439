"""What kinds of job exist, which Celery task runs each, on which queue, and who may start it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    task_name: str
    queue: str
    start_permission: str


SYSTEM_CHECK = JobKind(
    name="system_check",
    label="System check",
    task_name="ilportal.system_check",
    queue="default",
    start_permission="jobs.add_job",
)

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (SYSTEM_CHECK,)}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from None
