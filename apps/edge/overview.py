"""The devices of each loop at a glance (home page, loop page, fleet page): silent devices as
an alert, what each device sent (a chart), and the hard examples taken in per day."""

from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.utils import timezone
from django.utils.timesince import timesince

from apps.dashboard.charts import chart, counts_per_day, last_days, per_day
from apps.edge.models import EdgeDevice, IntakeOutcome, IntakeRecord
from apps.edge.services import devices_by_loop

CHART_DAYS = 30
INTAKE_SERIES = {
    IntakeOutcome.QUEUED: "hard, queued for labeling",
    IntakeOutcome.OVER_BUDGET: "hard, over budget (not stored)",
    IntakeOutcome.DUPLICATE: "near-duplicates (not stored)",
    IntakeOutcome.STORED: "sampled share (not hard)",
}


@dataclass
class LoopDevices:
    devices: list[EdgeDevice]
    volumes_chart: dict = field(default_factory=dict)
    intake_chart: dict = field(default_factory=dict)  # the loop page only

    @property
    def silent(self) -> list[EdgeDevice]:
        """Silent devices whose token still works (a revoked one is expected to be quiet)."""
        return [d for d in self.devices if d.silent and d.token.is_active]


def silent_alert(devices: LoopDevices) -> str | None:
    silent = devices.silent
    if not silent:
        return None
    minutes = settings.EDGE_SILENT_AFTER_S // 60
    names = ", ".join(
        f"{d.token.name} ({'never seen' if d.last_seen_at is None else timesince(d.last_seen_at)})"
        for d in silent[:5]
    )
    more = f" and {len(silent) - 5} more" if len(silent) > 5 else ""
    count = f"{len(silent)} device{'s' if len(silent) > 1 else ''}"
    return f"{count} silent for more than {minutes} min: {names}{more}"


def volumes_chart(loop_id: int, devices: list[EdgeDevice]) -> dict:
    """Images and hard examples each device sent (its books since it first called)."""
    return chart(
        [{"device": d.token.name, "images": d.images_sent, "hard": d.hard_sent} for d in devices],
        x="device",
        series={"images": "images sent", "hard": "hard examples sent"},
        x_title="device",
        y_title="images since the device first called",
        filename=f"device-volumes-loop-{loop_id}.csv",
        kind="bar",
    )


def devices_overview(loop_ids) -> dict[int, LoopDevices]:
    """Loops that have devices, with them: one query."""
    return {loop_id: LoopDevices(devices) for loop_id, devices in devices_by_loop(loop_ids).items()}


def intake_per_day(loop_id: int, days: list[date]) -> dict[date, dict[str, int]]:
    """The intake's outcomes per day in the portal's time zone (edge.IntakeRecord)."""
    return counts_per_day(
        IntakeRecord.objects.filter(loop_id=loop_id),
        days,
        by="outcome",
    )


def loop_page_devices(loop_id: int, today: date | None = None) -> LoopDevices:
    shown = LoopDevices(devices_by_loop([loop_id]).get(loop_id, []))
    shown.volumes_chart = volumes_chart(loop_id, shown.devices)
    days = last_days(CHART_DAYS, today or timezone.localdate())
    shown.intake_chart = chart(
        per_day(intake_per_day(loop_id, days), list(INTAKE_SERIES), days),
        x="day",
        series={str(key): name for key, name in INTAKE_SERIES.items()},
        x_title="day",
        y_title="images taken in per day",
        filename=f"hard-examples-per-day-loop-{loop_id}.csv",
    )
    return shown
