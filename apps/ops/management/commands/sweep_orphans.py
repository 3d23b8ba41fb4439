from django.core.management.base import BaseCommand

from apps.ops.sweeper import sweep_orphans


class Command(BaseCommand):
    help = (
        "Removes what killed processes left behind: scratch folders of dead jobs in this "
        "machine's temp dir, and model, image and upload files in storage that no row refers to "
        "(older than SWEEP_GRACE_S). --dry-run lists them and removes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List, remove nothing.")
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=None,
            help="Leave anything younger alone (default: SWEEP_GRACE_S).",
        )

    def handle(self, *args, dry_run, grace_seconds, **options):
        removals = sweep_orphans(dry_run=dry_run, grace_s=grace_seconds)
        verb = "Would remove" if dry_run else "Removed"
        for removal in removals:
            self.stdout.write(f"{verb} {removal}")
        total = sum(r.size for r in removals)
        self.stdout.write(f"{verb} {len(removals)} item(s), {total:,} bytes.")
