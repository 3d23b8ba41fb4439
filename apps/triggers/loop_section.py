"""The triggers' part of each loop's card (home page) and of the loop page, registered with the
dashboard's extension point: progress to the nearest sample-count rule, the last decision and
why; on the loop page every rule's distance to firing and the last decisions."""

from apps.dashboard.sections import LoopSection, register_loop_section
from apps.triggers.status import loop_page_triggers, triggers_by_loop


def register() -> None:
    register_loop_section(
        LoopSection(
            name="triggers",
            template="triggers/_loop_section.html",
            data_for_loops=triggers_by_loop,
            data_for_loop_page=loop_page_triggers,
            wide=True,
        )
    )
