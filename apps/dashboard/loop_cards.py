"""Every loop at a glance for the home page, in a fixed number of queries whatever the number of
loops, versions or jobs: deployed version and headline metric, the running job, alerts, and the
sections other apps register (apps.dashboard.sections)."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Max
from django.utils import timezone

from apps.dashboard.sections import FilledSection, sections_for
from apps.jobs.kinds import KINDS
from apps.jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from apps.loops import overview
from apps.loops.job_links import light_jobs
from apps.loops.models import Loop, ModelVersion

# Failures older than this no longer raise an alert on the home page.
ALERT_WINDOW = timedelta(days=7)
RECENT_FINISHED_JOBS = 500


@dataclass
class Alert:
    text: str
    url: str = ""


@dataclass
class LoopCard:
    loop: Loop
    headline: overview.Headline | None = None
    running: list[Job] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    sections: list[FilledSection] = field(default_factory=list)


def loop_cards(*, health_ok: bool = True) -> list[LoopCard]:
    loops = list(Loop.objects.select_related("dataset", "deployed_version"))
    if not loops:
        return []
    cards = {loop.pk: LoopCard(loop) for loop in loops}
    scopes = {loop.job_scope: loop.pk for loop in loops}

    deployed_ids = [loop.deployed_version_id for loop in loops if loop.deployed_version_id]
    latest = overview.latest_evaluations(deployed_ids)
    baseline_ids = {e.baseline_id for e in latest.values()} - {None}
    labels = {
        pk: f"v{number}"
        for pk, number in ModelVersion.objects.filter(pk__in=baseline_ids).values_list(
            "pk", "number"
        )
    }
    for loop in loops:
        if loop.deployed_version_id:
            cards[loop.pk].headline = overview.headline(loop.deployed_version_id, latest, labels)

    for job in light_jobs(Job.objects.filter(scope__in=scopes, status__in=ACTIVE_STATUSES)):
        cards[scopes[job.scope]].running.append(job)

    _job_alerts(cards, scopes)
    _gate_alerts(cards)
    if not health_ok:
        for card in cards.values():
            card.alerts.append(Alert("System health is not ok: jobs may not run", "#health"))

    for loop_id, filled in sections_for(list(cards)).items():
        cards[loop_id].sections = filled
        cards[loop_id].alerts += [Alert(s.alert) for s in filled if s.alert]
    return [cards[loop.pk] for loop in loops]


def _job_alerts(cards: dict[int, LoopCard], scopes: dict[str, int]) -> None:
    """The newest finished job of each kind per loop: an alert when it failed."""
    recent = (
        Job.objects.filter(
            scope__in=scopes,
            status__in=FINISHED_STATUSES,
            created_at__gte=timezone.now() - ALERT_WINDOW,
        )
        .only("id", "kind", "scope", "status", "message", "created_at")
        .order_by("-created_at", "-id")[:RECENT_FINISHED_JOBS]
    )
    seen: set[tuple[str, str]] = set()
    for job in recent:
        if (job.scope, job.kind) in seen:
            continue
        seen.add((job.scope, job.kind))
        if job.status == JobStatus.FAILED:
            kind = KINDS[job.kind].label if job.kind in KINDS else job.kind
            cards[scopes[job.scope]].alerts.append(
                Alert(f"{kind} job #{job.pk} failed: {job.message[:120]}", f"/jobs/{job.pk}/")
            )


def _gate_alerts(cards: dict[int, LoopCard]) -> None:
    """The newest version of a loop failed its gate (and was not force-deployed)."""
    newest = dict(
        Loop.objects.filter(pk__in=list(cards))
        .annotate(newest=Max("versions__number"))
        .values_list("pk", "newest")
    )
    failed = ModelVersion.objects.filter(gate_passed=False, stage="candidate").only(
        "id", "loop_id", "number", "gate_reasons"
    )
    pairs = [(loop_id, number) for loop_id, number in newest.items() if number]
    if not pairs:
        return
    for version in failed.filter(
        loop_id__in=[p[0] for p in pairs], number__in=[p[1] for p in pairs]
    ):
        if newest.get(version.loop_id) != version.number:
            continue
        reasons = "; ".join(c["text"] for c in version.gate_reasons if not c["passed"])
        cards[version.loop_id].alerts.append(
            Alert(
                f"{version.label} failed its gate: {reasons}",
                f"/loops/{version.loop_id}/v{version.number}/",
            )
        )
