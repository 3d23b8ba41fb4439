"""The "labels changed" announcement: the one seam that trigger rules, counters and the
dashboard listen to.

Every writer of annotation revisions (the labeling page, the API, imports, review) calls
`announce_labels_changed` once per batch. Receivers run after the writer's transaction
commits, never inside it, and a receiver that raises is logged: it never fails the write.

Receivers get keyword arguments:
    dataset_id: int
    sample_ids: tuple[int, ...]   the samples whose current labels (or their standing) changed
    source: str                   what wrote them: "manual", "import", "prediction", "review", ...
    user_id: int | None
"""

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

labels_changed = Signal()


def announce_labels_changed(
    dataset_id: int, sample_ids, *, source: str, user_id: int | None = None
) -> None:
    ids = tuple(sorted(set(sample_ids)))
    if not ids:
        return
    transaction.on_commit(
        lambda: _send(dataset_id=dataset_id, sample_ids=ids, source=source, user_id=user_id)
    )


def _send(**kwargs) -> None:
    for receiver, result in labels_changed.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "labels_changed receiver %r failed", receiver, exc_info=(type(result), result, None)
            )
