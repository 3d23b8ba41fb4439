"""The edge's part of each loop's card (home page) and of the loop page, registered with the
dashboard's extension point: devices, silent ones as an alert; on the loop page what each
device sent and the hard examples taken in per day."""

from apps.dashboard.sections import LoopSection, register_loop_section
from apps.edge.overview import devices_overview, loop_page_devices, silent_alert


def register() -> None:
    register_loop_section(
        LoopSection(
            name="devices",
            template="edge/_loop_section.html",
            data_for_loops=devices_overview,
            alert=silent_alert,
            data_for_loop_page=loop_page_devices,
            wide=True,
        )
    )
