"""The "deployed pointer moved" announcement: the predict path swaps its model, edge agents
see a new ETag, trigger rules reset their "since deploy" windows.

`move_deployed_pointer` (deploy, rollback, forced deploy) announces after its transaction
commits. A receiver that raises is logged and never undoes the deploy.

Receivers get keyword arguments:
    loop_id: int
    version_id: int
    previous_version_id: int | None
    action: str                   "deploy", "rollback" or "force"
    deployment_id: int
"""

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

deployed_pointer_moved = Signal()


def announce_deployed_pointer_moved(**kwargs) -> None:
    transaction.on_commit(lambda: _send(**kwargs))


def _send(**kwargs) -> None:
    for receiver, result in deployed_pointer_moved.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "deployed_pointer_moved receiver %r failed",
                receiver,
                exc_info=(type(result), result, None),
            )
