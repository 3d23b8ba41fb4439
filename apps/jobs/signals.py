from django.dispatch import Signal

# Sent with `job` when the reaper marks a running job failed because its worker went silent.
job_lost = Signal()
