"""Keyset pagination over ids (newest first): the cost of a page does not grow with its number.

`?after=<id>` shows the page of samples older than that id, `?before=<id>` the page newer than
it; each is one indexed range scan (see the (dataset, filter, id) indexes on Sample).
"""

from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass
class KeysetPage:
    items: list
    next_after: int | None  # id to pass as ?after= for the next (older) page
    previous_before: int | None  # id to pass as ?before= for the previous (newer) page


def _as_id(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def keyset_page(queryset: QuerySet, *, after=None, before=None, size: int) -> KeysetPage:
    after, before = _as_id(after), _as_id(before)
    if before is not None:
        # Walk newer ids upwards, then show them newest first like every other page.
        rows = list(queryset.filter(id__gt=before).order_by("id")[: size + 1])
        has_newer = len(rows) > size
        items = rows[:size][::-1]
        return KeysetPage(
            items=items,
            next_after=items[-1].id if items else None,
            previous_before=items[0].id if items and has_newer else None,
        )
    if after is not None:
        queryset = queryset.filter(id__lt=after)
    rows = list(queryset.order_by("-id")[: size + 1])
    items = rows[:size]
    return KeysetPage(
        items=items,
        next_after=items[-1].id if len(rows) > size else None,
        # Pages reached with ?after= have newer ones; the first page has none.
        previous_before=items[0].id if items and after is not None else None,
    )
