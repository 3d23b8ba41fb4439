import os
import socket
import sys
import uuid

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import ensure_first_admin
from apps.ops.supervisor import AlreadyRunning, Supervisor, run_lock, wait_for_http
from ilportal import embedded_redis


class Command(BaseCommand):
    help = (
        "Migrates, creates the first admin, and runs the whole portal: the embedded Redis "
        "(when REDIS_URL is unset), the ASGI server, Celery workers for the default and train "
        "queues, and Celery beat. A child that crashes is started again; Ctrl-C stops everything. "
        "One runportal per var/ (a lock); its children die with it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--web-processes",
            type=int,
            default=os.environ.get("WEB_PROCESSES", "1"),  # argparse checks it as an int
            help="ASGI server processes sharing the port (default 1, or WEB_PROCESSES). More "
            "serve more predict requests at once; each loads the deployed models it serves.",
        )
        parser.add_argument("--default-concurrency", type=int, default=2)
        parser.add_argument("--stop-timeout", type=float, default=20)
        parser.add_argument(
            "--no-demo",
            action="store_true",
            help="On the first start, skip the demo dataset and the demo loop.",
        )

    def handle(self, *args, **options):
        try:
            with run_lock(settings.VAR_DIR / "runportal.lock"):
                self._run(**options)
        except AlreadyRunning as exc:
            raise CommandError(str(exc)) from exc

    def _run(
        self, *, host, port, web_processes, default_concurrency, stop_timeout, no_demo, **options
    ):
        if web_processes < 1:
            raise CommandError("--web-processes must be at least 1.")
        if make_private(settings.VAR_DIR):
            self.stdout.write(f"Made {settings.VAR_DIR} readable by its owner only (mode 0700).")
        supervisor = Supervisor(stop_timeout_s=stop_timeout, out=self.stdout)
        run_id = uuid.uuid4().hex
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ilportal.settings"}
        env["VAR_DIR"] = str(settings.VAR_DIR)
        env["PYTHONUNBUFFERED"] = "1"
        env["ILPORTAL_RUN_ID"] = run_id  # /healthz says it: the probe knows its own web process

        if settings.REDIS_IS_EMBEDDED:
            try:
                redis_process = embedded_redis.start(settings.VAR_DIR)
            except embedded_redis.EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
            supervisor.adopt(
                "redis", redis_process, restart=lambda: embedded_redis.start(settings.VAR_DIR)
            )
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
            web = self._start_web(supervisor, python, host, port, web_processes, env)
            supervisor.start(
                "worker-default",
                worker + ["-Q", "default", "-n", "default@%h", "-c", str(default_concurrency)],
                env,
                on_exit=self._worker_died("default"),
            )
            supervisor.start(
                "worker-train",
                worker + ["-Q", "train", "-n", "train@%h", "-c", "1", "--prefetch-multiplier", "1"],
                env,
                on_exit=self._worker_died("train"),
            )
            supervisor.start(
                "beat",
                celery + ["beat", "-l", "info", "-s", settings.CELERY_BEAT_SCHEDULE_FILE],
                env,
            )
            url = f"http://{host}:{port}/"
            if wait_for_http(url + "healthz", 60, lambda: web.popen.poll() is None, run_id):
                supervisor.say("runportal", f"ilportal is running at {url}  (Ctrl-C stops it)")
            else:
                supervisor.say(
                    "runportal",
                    f"the web process did not answer at {url} within 60 s"
                    + (" (something else answers on that port)" if _port_taken(host, port) else ""),
                )
        except BaseException:
            supervisor.stop_all()
            raise
        sys.exit(supervisor.wait())

    def _start_web(self, supervisor, python, host, port, processes, env):
        """The ASGI server: one daphne on host:port, or several sharing one listening socket
        (the kernel spreads the connections; the supervisor keeps the socket open across their
        restarts). Returns the first."""
        asgi = "ilportal.asgi:application"
        if processes == 1:
            return supervisor.start(
                "web", [python, "-m", "daphne", "-b", host, "-p", str(port), asgi], env
            )
        if ":" in host:  # daphne adopts an inherited socket as IPv4 only
            raise CommandError("--web-processes above 1 needs an IPv4 --host.")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError as exc:
            listener.close()
            raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
        listener.listen(1024)
        listener.set_inheritable(True)
        self._web_listener = listener  # open as long as the supervisor runs
        started = [
            supervisor.start(
                "web" if number == 1 else f"web-{number}",
                [python, "-m", "daphne", "--fd", str(listener.fileno()), asgi],
                env,
                pass_fds=(listener.fileno(),),
            )
            for number in range(1, processes + 1)
        ]
        return started[0]

    def _worker_died(self, queue: str):
        """The supervisor saw the worker exit: its running jobs are lost now, not in 120 s."""
        hostname = f"{queue}@{socket.gethostname()}"

        def mark_lost(process, code):
            from django.db import close_old_connections

            from apps.jobs.services import fail_jobs_of_worker

            close_old_connections()
            lost = fail_jobs_of_worker(hostname, f"{process.name} exited with status {code}")
            if lost:
                self.stdout.write(f"Marked job(s) {lost} lost: their worker {hostname} died.")

        return mark_lost

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
        from apps.triggers.demo import DEMO_RULE_NAME, add_demo_rule

        try:
            dataset = seed_demo().dataset
        except GeneratorMissing as exc:
            self.stdout.write(self.style.WARNING(str(exc)))
            return
        loop = create_demo_loop(dataset)
        if loop is not None:
            add_demo_rule(loop)
            self.stdout.write(
                f"Demo: dataset {dataset.name!r} and loop {loop.name!r}; its first model is "
                f"training now (Loops → demo). Its rule {DEMO_RULE_NAME!r} trains again by itself."
            )


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def make_private(folder) -> bool:
    """var/ of an install made before it was created 0700 (its database, sessions and media
    were readable by every local account): narrowed to its owner. True if it changed."""
    mode = folder.stat().st_mode & 0o777
    if not mode & 0o077:
        return False
    try:
        folder.chmod(mode & 0o700)
    except OSError:  # not its owner: left as it is
        return False
    return True
