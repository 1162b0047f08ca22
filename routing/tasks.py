"""django-q2 tasks: thin wrappers that call one domain function."""

from routing.services.classification import job_classify


def classify_job(job_id: str) -> str | None:
    """Classify a job whose policy calls functions or webhooks (ACS §4.4)."""
    return job_classify(job_id=job_id)
