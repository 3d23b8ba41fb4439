"""The labeling queue's part of each loop's card (home page) and of the loop page, registered
with the dashboard's extension point: hard examples waiting, a link to the queue, and on the
loop page the labels saved per day."""

from apps.dashboard.sections import LoopSection, register_loop_section
from apps.labeling.throughput import loop_page_queue, waiting_by_loop


def register() -> None:
    register_loop_section(
        LoopSection(
            name="labeling",
            template="labeling/_loop_section.html",
            data_for_loops=waiting_by_loop,
            data_for_loop_page=loop_page_queue,
            wide=True,
        )
    )
