from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.jobs import events
from apps.jobs.models import Job

CLOSE_FORBIDDEN = 4403
CLOSE_UNSUPPORTED_DATA = 1003


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    """Live updates of one job. The page renders from the database; this only keeps it fresh."""

    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not await self._may_view(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = events.group_name(self.job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"event": "state", "job": await self._current_state()})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Clients only listen. A message is closed on without being decoded: each may be 1 MiB
        (daphne's limit), and decoding a stream of them would queue the rest in memory."""
        await self.close(code=CLOSE_UNSUPPORTED_DATA)

    async def job_state(self, message):
        await self.send_json({"event": "state", "job": message["job"]})

    async def job_log(self, message):
        await self.send_json({"event": "log", "line": message["line"]})

    @database_sync_to_async
    def _may_view(self, user) -> bool:
        if user is None or not user.is_authenticated or not user.has_perm("jobs.view_job"):
            return False
        return Job.objects.filter(pk=self.job_id).exists()

    @database_sync_to_async
    def _current_state(self) -> dict:
        return events.job_state(Job.objects.get(pk=self.job_id))
