"""The extension point: sections other apps register fill the home page's cards from one call
for all loops, and the loop page from its own call where a section has one."""

from datetime import date

import pytest

from apps.dashboard import sections
from apps.dashboard.charts import last_days, per_day


@pytest.fixture
def only_these_sections(monkeypatch):
    monkeypatch.setattr(sections, "_SECTIONS", {})
    return sections


def test_cards_get_one_call_for_all_loops_and_the_loop_page_its_own(only_these_sections):
    calls = []

    def for_loops(loop_ids):
        calls.append(("cards", list(loop_ids)))
        return {
            loop_id: {"n": loop_id, "alert": "late" if loop_id == 2 else None}
            for loop_id in loop_ids
            if loop_id != 3
        }

    def for_page(loop_id):
        calls.append(("page", loop_id))
        return {"n": loop_id, "more": True}

    sections.register_loop_section(
        sections.LoopSection(
            name="fuller",
            template="x.html",
            data_for_loops=for_loops,
            alert=lambda data: data["alert"],
            data_for_loop_page=for_page,
            wide=True,
        )
    )
    sections.register_loop_section(
        sections.LoopSection(name="plain", template="y.html", data_for_loops=for_loops)
    )
    filled = sections.sections_for([1, 2, 3])
    assert calls == [("cards", [1, 2, 3]), ("cards", [1, 2, 3])]
    assert [s.alert for s in filled[2]] == ["late", None] and filled[3] == []
    calls.clear()
    page = sections.sections_for_loop_page(1)
    assert calls == [("page", 1), ("cards", [1])]
    assert [(s.name, s.data.get("more"), s.wide) for s in page] == [
        ("fuller", True, True),
        ("plain", None, False),
    ]


def test_a_day_without_rows_is_a_zero():
    days = last_days(3, date(2026, 3, 2))
    assert days == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]
    points = per_day({date(2026, 3, 1): {"in": 4}}, ["in", "out"], days)
    assert points == [
        {"day": "2026-02-28", "in": 0, "out": 0},
        {"day": "2026-03-01", "in": 4, "out": 0},
        {"day": "2026-03-02", "in": 0, "out": 0},
    ]
