import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import ensure_first_admin
from apps.ops.supervisor import Supervisor, wait_for_http
from ilportal import embedded_redis


class Command(BaseCommand):
    help = (
        "Migrates, creates the first admin, and runs the whole portal: the embedded Redis "
        "(when REDIS_URL is unset), the ASGI server, Celery workers for the default and train "
        "queues, and Celery beat. Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--default-concurrency", type=int, default=2)
        parser.add_argument("--stop-timeout", type=float, default=20)
        parser.add_argument(
            "--no-demo",
            action="store_true",
            help="On the first start, skip the demo dataset and the demo loop.",
        )

    def handle(self, *args, host, port, default_concurrency, stop_timeout, no_demo, **options):
        supervisor = Supervisor(stop_timeout_s=stop_timeout, out=self.stdout)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ilportal.settings"}
        env["VAR_DIR"] = str(settings.VAR_DIR)
        env["PYTHONUNBUFFERED"] = "1"

        if settings.REDIS_IS_EMBEDDED:
            try:
                redis_process = embedded_redis.start(settings.VAR_DIR)
            except embedded_redis.EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
            supervisor.adopt("redis", redis_process)
            supervisor.say("runportal", "embedded Redis started (set REDIS_URL to use your own)")

        try:
            first_start = self._prepare_database()
            if settings.REDIS_IS_EMBEDDED:
                self._fail_jobs_of_the_last_run()
            if first_start and not no_demo:
                self._seed_demo()
            python = sys.executable
            celery = [python, "-m", "celery", "-A", "ilportal"]
            worker = celery + ["worker", "-l", "info", "--without-mingle", "--without-gossip"]
            web = supervisor.start(
                "web",
                [python, "-m", "daphne", "-b", host, "-p", str(port), "ilportal.asgi:application"],
                env,
            )
            supervisor.start(
                "worker-default",
                worker + ["-Q", "default", "-n", "default@%h", "-c", str(default_concurrency)],
                env,
            )
            supervisor.start(
                "worker-train",
                worker + ["-Q", "train", "-n", "train@%h", "-c", "1", "--prefetch-multiplier", "1"],
                env,
            )
            supervisor.start(
                "beat",
                celery + ["beat", "-l", "info", "-s", settings.CELERY_BEAT_SCHEDULE_FILE],
                env,
            )
            url = f"http://{host}:{port}/"
            if wait_for_http(url + "healthz", 60, lambda: web.popen.poll() is None):
                supervisor.say("runportal", f"ilportal is running at {url}  (Ctrl-C stops it)")
        except BaseException:
            supervisor.stop_all()
            raise
        sys.exit(supervisor.wait())

    def _prepare_database(self) -> bool:
        """Migrates and creates the first admin; True on the very first start."""
        call_command("migrate", interactive=False, verbosity=0)
        first_admin = ensure_first_admin()
        if first_admin is None:
            return False
        credentials = settings.VAR_DIR / "first-admin.txt"
        credentials.touch(mode=0o600)
        credentials.write_text(
            f"username: {first_admin.username}\npassword: {first_admin.password}\n"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nFirst admin account created:  username {first_admin.username}  "
                f"password {first_admin.password}\n(also saved in {credentials}; change it "
                "after logging in)\n"
            )
        )
        return True

    def _fail_jobs_of_the_last_run(self):
        """With the embedded Redis every worker is ours and none runs yet: a job still marked
        running was cut off when the portal last stopped. Say so now, not after the timeout."""
        from apps.jobs.services import fail_stale_jobs

        failed = fail_stale_jobs(0, message="The portal was stopped while this job ran")
        if failed:
            self.stdout.write(f"Marked {len(failed)} job(s) cut off by the last stop as failed.")

    def _seed_demo(self):
        """A new user sees the loop work at once: demo data, and a demo loop that trains."""
        from apps.datasets.demo import GeneratorMissing, seed_demo
        from apps.loops.demo import create_demo_loop

        try:
            dataset = seed_demo().dataset
        except GeneratorMissing as exc:
            self.stdout.write(self.style.WARNING(str(exc)))
            return
        loop = create_demo_loop(dataset)
        if loop is not None:
            self.stdout.write(
                f"Demo: dataset {dataset.name!r} and loop {loop.name!r}; its first model is "
                "training now (Loops → demo)."
            )
