"""Extension point: parts of a loop's card (home page) and of the loop page that other apps add.

Trigger rules (progress to the next firing), edge devices (silent devices) and hard examples
(waiting for labels) register a section in their AppConfig.ready():

    from apps.dashboard.sections import LoopSection, register_loop_section

    register_loop_section(LoopSection(
        name="rules",
        template="triggers/_loop_section.html",   # gets `loop`, `data` and `compact`
        data_for_loops=rule_progress_by_loop,      # (loop ids) -> {loop id: data}, few queries
        alert=lambda data: data.get("alert"),      # optional: a line for the home page's alerts
        data_for_loop_page=rules_of_loop,          # optional: (loop id) -> the loop page's data
        wide=True,                                 # optional: full width on the loop page
    ))


`data_for_loops` is called once per page for all loops shown, so the home page's query count does
not grow with the number of loops. A loop without data in the mapping shows nothing. The loop page
shows one loop and may show more of it: it calls `data_for_loop_page` where a section has one.
Sections are rendered for anyone who may view loops; a template hides what needs another
permission (`perms` is in its context).
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LoopSection:
    name: str
    template: str
    data_for_loops: Callable[[list[int]], dict]
    alert: Callable[[object], str | None] | None = None
    data_for_loop_page: Callable[[int], object] | None = None
    wide: bool = False  # the loop page gives it the full width (tables, charts)


_SECTIONS: dict[str, LoopSection] = {}


def register_loop_section(section: LoopSection) -> None:
    _SECTIONS[section.name] = section


def registered_sections() -> list[LoopSection]:
    return list(_SECTIONS.values())


@dataclass
class FilledSection:
    name: str
    template: str
    data: object
    alert: str | None
    wide: bool = False


def sections_for(loop_ids: list[int]) -> dict[int, list[FilledSection]]:
    """Each loop's filled sections (in registration order), for the home page's cards."""
    return _filled(loop_ids, lambda section: section.data_for_loops(loop_ids) or {})


def sections_for_loop_page(loop_id: int) -> list[FilledSection]:
    """One loop's sections for its page: the fuller data where a section offers it (alerts are
    the home page's)."""

    def data(section: LoopSection) -> dict:
        if section.data_for_loop_page is not None:
            return {loop_id: section.data_for_loop_page(loop_id)}
        return section.data_for_loops([loop_id]) or {}

    return _filled([loop_id], data, with_alerts=False)[loop_id]


def _filled(loop_ids: list[int], data_of, *, with_alerts=True) -> dict[int, list[FilledSection]]:
    filled: dict[int, list[FilledSection]] = {loop_id: [] for loop_id in loop_ids}
    for section in registered_sections():
        by_loop = data_of(section)
        for loop_id in loop_ids:
            if loop_id in by_loop:
                data = by_loop[loop_id]
                filled[loop_id].append(
                    FilledSection(
                        section.name,
                        section.template,
                        data,
                        section.alert(data) if section.alert and with_alerts else None,
                        section.wide,
                    )
                )
    return filled
