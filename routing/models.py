"""Router data model (ACS Job Router 2023-11-01 resources).

Policies keep their polymorphic parts (distribution mode, rules, attachments, exception rules) as
JSON in the canonical 2023-11-01 wire shape, validated by `routing.validation` before they are
stored. Anything the router matches or orders on is a real, indexed column: job status, queue,
channel, priority, enqueue time; worker queue and channel memberships; offer and timer due times.

State changes go through the functions in `routing.services`; nothing else writes these rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q


def new_etag() -> str:
    return uuid.uuid4().hex


def touched(now: datetime) -> dict[str, Any]:
    """The columns of a modification at `now`, for `QuerySet.update(**touched(now), ...)`: a new
    ETag and Last-Modified (`updated_at`) always change together (`RouterResource.touch` is the
    same for a loaded row)."""
    return {"etag": new_etag(), "updated_at": now}


class JobStatus(models.TextChoices):
    """ACS Job Router 2023-11-01, RouterJobStatus."""

    CREATED = "created"
    PENDING_CLASSIFICATION = "pendingClassification"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    CLASSIFICATION_FAILED = "classificationFailed"
    PENDING_SCHEDULE = "pendingSchedule"
    SCHEDULED = "scheduled"
    SCHEDULE_FAILED = "scheduleFailed"
    WAITING_FOR_ACTIVATION = "waitingForActivation"


# Statuses in which a job waits for a worker and can simply be cancelled.
CANCELLABLE_STATUSES = frozenset(
    {
        JobStatus.CREATED,
        JobStatus.PENDING_CLASSIFICATION,
        JobStatus.QUEUED,
        JobStatus.PENDING_SCHEDULE,
        JobStatus.SCHEDULED,
        JobStatus.WAITING_FOR_ACTIVATION,
        JobStatus.CLASSIFICATION_FAILED,
        JobStatus.SCHEDULE_FAILED,
    }
)
# Statuses a job may be deleted in (ACS: "job needs to be in a termination state").
DELETABLE_JOB_STATUSES = frozenset(
    {JobStatus.CLOSED, JobStatus.CANCELLED, JobStatus.CLASSIFICATION_FAILED, JobStatus.SCHEDULE_FAILED}
)
# Statuses that block deleting the job's queue, and that the `active` list filter selects.
FINAL_JOB_STATUSES = frozenset({JobStatus.CLOSED, JobStatus.CANCELLED})
ACTIVE_JOB_STATUSES = frozenset(set(JobStatus) - FINAL_JOB_STATUSES)


class RouterResource(models.Model):
    """Common columns: the id the client chose, an opaque ETag and Last-Modified time."""

    id = models.CharField(primary_key=True, max_length=255)
    etag = models.CharField(max_length=32, default=new_etag)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        abstract = True

    def touch(self, now: datetime) -> None:
        """Mark the row as modified (new ETag, Last-Modified = now); see `touched`."""
        for name, value in touched(now).items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.id


class DistributionPolicy(RouterResource):
    name = models.CharField(max_length=255, blank=True, default="")
    offer_expires_after_seconds = models.FloatField(null=True, blank=True)
    # {"kind": "longestIdle"|"roundRobin"|"bestWorker", "minConcurrentOffers", ...}
    mode = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "distribution policies"


class ClassificationPolicy(RouterResource):
    name = models.CharField(max_length=255, blank=True, default="")
    fallback_queue_id = models.CharField(max_length=255, null=True, blank=True)
    queue_selector_attachments = models.JSONField(default=list, blank=True)
    prioritization_rule = models.JSONField(null=True, blank=True)
    worker_selector_attachments = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "classification policies"


class ExceptionPolicy(RouterResource):
    name = models.CharField(max_length=255, blank=True, default="")
    exception_rules = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "exception policies"


class Queue(RouterResource):
    name = models.CharField(max_length=255, blank=True, default="")
    # Extension (seed 002 QueueInfo): what the queue is for, shown to agents choosing queues.
    description = models.TextField(blank=True, default="")
    distribution_policy = models.ForeignKey(
        DistributionPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="queues"
    )
    exception_policy = models.ForeignKey(
        ExceptionPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="queues"
    )
    # Always contains {"Id": <id>} (ACS adds it; selectors and classification match on it).
    labels = models.JSONField(default=dict, blank=True)
    # Extension (seed 002, Q3): a worker serving several queues gets higher-priority queues first.
    priority = models.IntegerField(default=0)
    # Round robin: the worker that received this queue's last offer.
    last_offered_worker_id = models.CharField(max_length=255, null=True, blank=True, editable=False)


class Worker(RouterResource):
    capacity = models.IntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    available_for_offers = models.BooleanField(default=False)
    # When the worker last became idle (no assignments) or registered; longest idle orders on it.
    idle_since = models.DateTimeField(null=True, blank=True)
    # Optional desk login for this worker (the agent desk, seed 002).
    user = models.OneToOneField(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="router_worker"
    )


class WorkerQueue(models.Model):
    """A worker's membership in a queue. `priority` is the per-queue agent priority (seed 002, Q5)."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="queue_links")
    # Not a foreign key: a worker may list a queue that is created later, as in ACS.
    queue_id = models.CharField(max_length=255)
    position = models.PositiveIntegerField(default=0)
    priority = models.IntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["worker", "queue_id"], name="uniq_worker_queue")]
        # Candidate lookup for a job starts from its queue.
        indexes = [models.Index(fields=["queue_id", "worker"], name="workerqueue_by_queue")]

    def __str__(self) -> str:
        return self.queue_id


class WorkerChannel(models.Model):
    """ACS RouterChannel: what a job on this channel costs the worker's capacity."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="channels")
    channel_id = models.CharField(max_length=255)
    capacity_cost_per_job = models.IntegerField()
    max_number_of_jobs = models.IntegerField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["worker", "channel_id"], name="uniq_worker_channel")]
        indexes = [models.Index(fields=["channel_id", "worker"], name="workerchannel_by_channel")]

    def __str__(self) -> str:
        return self.channel_id


# The queue's order (ACS §4.7): expedited first, then higher priority, then earlier enqueue, then id.
# `job_match_order` and `job_queue_order` are indexes in this order.
QUEUE_ORDER = ("-expedite", "-priority", "enqueued_at", "id")


class JobQuerySet(models.QuerySet["Job"]):
    def in_queue_order(self) -> JobQuerySet:
        return self.order_by(*QUEUE_ORDER)

    def queued_in(self, queue_id: str | None) -> JobQuerySet:
        return self.filter(queue_id=queue_id, status=JobStatus.QUEUED)

    def ahead_of(self, job: Job) -> JobQuerySet:
        """Jobs before `job` in queue order (the same order as `QUEUE_ORDER` and `queue_order_key`)."""
        return self.filter(
            Q(expedite__gt=job.expedite)
            | Q(expedite=job.expedite, priority__gt=job.priority)
            | Q(expedite=job.expedite, priority=job.priority, enqueued_at__lt=job.enqueued_at)
            | Q(expedite=job.expedite, priority=job.priority, enqueued_at=job.enqueued_at, id__lt=job.pk)
        )


class Job(RouterResource):
    objects = JobQuerySet.as_manager()

    channel_reference = models.CharField(max_length=1024, null=True, blank=True)
    status = models.CharField(max_length=32, choices=JobStatus.choices, default=JobStatus.CREATED)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    channel_id = models.CharField(max_length=255, null=True, blank=True)
    classification_policy = models.ForeignKey(
        ClassificationPolicy, null=True, blank=True, on_delete=models.DO_NOTHING,
        db_constraint=False, related_name="jobs",
    )
    queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="jobs"
    )
    priority = models.IntegerField(default=1)
    disposition_code = models.CharField(max_length=255, null=True, blank=True)
    requested_worker_selectors = models.JSONField(default=list, blank=True)
    attached_worker_selectors = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    notes = models.JSONField(default=list, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    matching_mode = models.JSONField(default=dict, blank=True)
    unassignment_count = models.IntegerField(default=0)
    # True while an active selector has expedite: true; such jobs go first in their queue.
    expedite = models.BooleanField(default=False)
    # Why the last classification failed (ACS RouterJobClassificationFailed errors).
    classification_error = models.TextField(null=True, blank=True)
    # Counts the job's visits to a queue; exception rules fire at most once per visit.
    queue_visit = models.IntegerField(default=0)
    # [{"ruleId", "exceptionPolicyId", "queueId", "visit", "firedAt"}]: exception rules that fired.
    exception_triggers = models.JSONField(default=list, blank=True)

    def queue_order_key(self) -> tuple[bool, int, datetime | None, str]:
        """Sort key of `QUEUE_ORDER` in Python (merging per-queue streams)."""
        return (not self.expedite, -self.priority, self.enqueued_at, self.pk)

    class Meta:
        indexes = [
            # The queue's order (ACS §4.7): what a freed worker is offered next, and job position.
            models.Index(
                fields=["queue", "status", "-expedite", "-priority", "enqueued_at"], name="job_queue_order"
            ),
            # What a freed worker is offered next: one index-ordered stream per (queue, channel).
            models.Index(
                fields=["queue", "status", "channel_id", "-expedite", "-priority", "enqueued_at", "id"],
                name="job_match_order",
            ),
            models.Index(fields=["status", "channel_id"], name="job_status_channel"),
            models.Index(fields=["scheduled_at"], name="job_scheduled_at"),
        ]


class OfferStatus(models.TextChoices):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    REVOKED = "revoked"


def open_offer_q(now: datetime, prefix: str = "") -> Q:
    """Offers that count at `now`: open and not past `expiresAt`. An expired offer is never
    shown, never accepted and holds no capacity, even before the timer loop has marked it."""
    return Q(**{f"{prefix}status": OfferStatus.OPEN}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


class OfferQuerySet(models.QuerySet["Offer"]):
    def open_at(self, now: datetime) -> OfferQuerySet:
        return self.filter(open_offer_q(now))


class Offer(models.Model):
    """ACS RouterJobOffer. Only `open` offers are shown to clients, and only until `expires_at`."""

    objects = OfferQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="offers")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="offers")
    channel_id = models.CharField(max_length=255)
    capacity_cost = models.IntegerField()
    offered_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=OfferStatus.choices, default=OfferStatus.OPEN)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["worker", "status"], name="offer_worker_status"),
            models.Index(fields=["job", "status"], name="offer_job_status"),
        ]

    def is_open_at(self, now: datetime) -> bool:
        """Python twin of `open_offer_q` for an offer already read (and locked)."""
        return self.status == OfferStatus.OPEN and (self.expires_at is None or self.expires_at > now)

    def __str__(self) -> str:
        return str(self.id)


# Assignments that hold capacity: neither closed nor unassigned.
LIVE_ASSIGNMENT_Q = Q(closed_at__isnull=True, unassigned_at__isnull=True)


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def live(self) -> AssignmentQuerySet:
        return self.filter(LIVE_ASSIGNMENT_Q)

    def visible(self) -> AssignmentQuerySet:
        """What a job shows as its assignments: all but the unassigned ones, oldest first (ACS)."""
        return self.filter(unassigned_at__isnull=True).order_by("assigned_at")


class Assignment(models.Model):
    """ACS RouterJobAssignment. Holds the worker's capacity until it is closed."""

    objects = AssignmentQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="assignments")
    # A worker can be deleted while the job's history still names it.
    worker = models.ForeignKey(
        Worker, on_delete=models.DO_NOTHING, db_constraint=False, related_name="assignments"
    )
    channel_id = models.CharField(max_length=255)
    capacity_cost = models.IntegerField()
    assigned_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    # A close requested for later (CloseJobOptions.closeAt); the timer loop closes it then.
    close_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Unassigned assignments no longer hold capacity and are dropped from the job.
    unassigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["worker", "closed_at"], name="assignment_worker_open")]
        constraints = [
            # At most one live assignment per job: the database refuses a second accept.
            models.UniqueConstraint(
                fields=["job"], condition=LIVE_ASSIGNMENT_Q,
                name="one_live_assignment_per_job",
            )
        ]

    def __str__(self) -> str:
        return str(self.id)


class JobDeclineQuerySet(models.QuerySet["JobDecline"]):
    def blocking_at(self, now: datetime) -> JobDeclineQuerySet:
        """Declines still in their window at `now`: no retryOfferAt, or one still ahead."""
        return self.filter(Q(retry_offer_at__isnull=True) | Q(retry_offer_at__gt=now))


class JobDecline(models.Model):
    """A worker declined a job: no new offer of it to them until `retry_offer_at` (ACS §4.2)."""

    objects = JobDeclineQuerySet.as_manager()

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="declines")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="declines")
    retry_offer_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "worker"], name="uniq_job_decline")]


class TimerKind(models.TextChoices):
    OFFER_EXPIRY = "offerExpiry"
    ASSIGNMENT_CLOSE = "assignmentClose"
    DECLINE_RETRY = "declineRetry"
    JOB_SCHEDULE = "jobSchedule"
    EXCEPTION_WAIT_TIME = "exceptionWaitTime"
    SELECTOR_EXPIRY = "selectorExpiry"
    # Owed work, due at once (`routing.services.common.owe`): run right after commit, or by the
    # timer loop should the process that owed it die first.
    CLASSIFY = "classify"
    EXCEPTION_QUEUE_LENGTH = "exceptionQueueLength"
    ENQUEUE = "enqueue"
    SCHEDULE = "schedule"
    QUEUE_VISIT = "queueVisit"
    MATCH_JOB = "matchJob"
    MATCH_WORKER = "matchWorker"
    MATCH_QUEUE = "matchQueue"
    # A classification handed to the background worker (a policy that calls out over HTTP): due
    # when that task should long have finished. Deleted when the classification completes; if it
    # comes due, the task was lost and the classification is requested again.
    CLASSIFY_LEASE = "classifyLease"


# Owed work runs at the real time it is claimed and is deleted when done; the other kinds are
# scheduled transitions, stamped with their own due time and kept (fired) for a day.
OWED_KINDS = frozenset(
    {
        TimerKind.CLASSIFY,
        TimerKind.EXCEPTION_QUEUE_LENGTH,
        TimerKind.ENQUEUE,
        TimerKind.SCHEDULE,
        TimerKind.QUEUE_VISIT,
        TimerKind.MATCH_JOB,
        TimerKind.MATCH_WORKER,
        TimerKind.MATCH_QUEUE,
        TimerKind.CLASSIFY_LEASE,
    }
)


class RouterTimer(models.Model):
    """A stored due time. The timer loop claims due rows by compare-and-set and runs them.

    Stored rather than held in memory so that a restart loses nothing; the (fired_at, due_at) index
    makes "the earliest pending due time" one index probe.
    """

    kind = models.CharField(max_length=32, choices=TimerKind.choices)
    target_id = models.CharField(max_length=255)
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    # A handler that raised: how often, the last error (bounded), and the due time it was first
    # set for (due_at then moves out by the back-off; the transition is still stamped with this).
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    first_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["fired_at", "due_at"], name="timer_pending_due")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target_id} @ {self.due_at:%Y-%m-%d %H:%M:%S}"


class RouterEvent(models.Model):
    """A change a live page may care about, written in the changing transaction (one row per
    topic: `worker:<id>`, `job:<id>`, `queue:<id>`). Every web process's push hub
    (`agents.hub`) reads the rows in id order and renders what changed; a row carries no payload.
    `origin` is no longer written (kept empty).
    """

    topic = models.CharField(max_length=300)
    origin = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="event_created")]

    def __str__(self) -> str:
        return self.topic


# The 22 Job Router event types (azure.eventgrid.SystemEventNames, Router*), as `eventType`.
ROUTER_EVENT_TYPES = tuple(
    "Microsoft.Communication." + name
    for name in (
        "RouterJobReceived", "RouterJobClassified", "RouterJobClassificationFailed", "RouterJobQueued",
        "RouterJobCompleted", "RouterJobClosed", "RouterJobCancelled", "RouterJobExceptionTriggered",
        "RouterJobWorkerSelectorsExpired", "RouterJobUnassigned", "RouterJobWaitingForActivation",
        "RouterJobSchedulingFailed", "RouterJobDeleted", "RouterWorkerOfferIssued", "RouterWorkerOfferAccepted",
        "RouterWorkerOfferDeclined", "RouterWorkerOfferRevoked", "RouterWorkerOfferExpired",
        "RouterWorkerRegistered", "RouterWorkerUpdated", "RouterWorkerDeregistered", "RouterWorkerDeleted",
    )
)


class PublishedEvent(models.Model):
    """One router event as Event Grid publishes it (ACS Job Router events, `Microsoft.Communication.
    Router*`), written by the domain operation that made the transition, in its transaction: the
    outbox of webhook delivery and the job/worker timeline of the admin. `seq` orders events as
    they committed per row lock (the order of one job's events); `data` is the event's `data`
    object in the wire shape of the Event Grid swagger (`AcsRouter*EventData`)."""

    seq = models.BigAutoField(primary_key=True)
    id = models.UUIDField(default=uuid.uuid4, unique=True)
    event_type = models.CharField(max_length=80)
    subject = models.CharField(max_length=1200)
    data = models.JSONField(default=dict)
    # What the timeline of a job or a worker selects on (either may be empty).
    job_id = models.CharField(max_length=255, null=True, blank=True)
    worker_id = models.CharField(max_length=255, null=True, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["occurred_at"], name="pubevent_occurred"),
            models.Index(fields=["job_id", "seq"], name="pubevent_job"),
            models.Index(fields=["worker_id", "seq"], name="pubevent_worker"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.subject}"


class DeliverySchema(models.TextChoices):
    """Event Grid `eventDeliverySchema` values a subscription may ask for."""

    EVENT_GRID = "EventGridSchema"
    CLOUD_EVENTS = "CloudEventSchemaV1_0"


class ProvisioningState(models.TextChoices):
    """Event Grid subscription `provisioningState`: AwaitingManualAction until the endpoint
    passed validation, then Succeeded; Failed when it refused the handshake."""

    AWAITING = "AwaitingManualAction"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class EventSubscription(RouterResource):
    """A webhook subscription to router events (Event Grid event subscription, webhook
    destination). Only `Succeeded` subscriptions get deliveries. A delivery loop owns a
    subscription while `lease_until` is ahead (compare-and-set claim), so each batch is sent by
    one process and one job's events leave in order."""

    endpoint_url = models.URLField(max_length=2048)
    delivery_schema = models.CharField(max_length=32, choices=DeliverySchema.choices, default=DeliverySchema.EVENT_GRID)
    included_event_types = models.JSONField(default=list, blank=True)
    subject_begins_with = models.CharField(max_length=1024, blank=True, default="")
    subject_ends_with = models.CharField(max_length=1024, blank=True, default="")
    max_delivery_attempts = models.PositiveIntegerField(default=30)
    event_ttl_minutes = models.PositiveIntegerField(default=1440)
    max_events_per_batch = models.PositiveIntegerField(default=1)
    dead_letter_enabled = models.BooleanField(default=True)
    provisioning_state = models.CharField(
        max_length=32, choices=ProvisioningState.choices, default=ProvisioningState.AWAITING
    )
    # Standard Webhooks secret ("whsec_" + base64), shown to the client once, at creation.
    signing_secret = models.CharField(max_length=100)
    validation_code = models.CharField(max_length=64, blank=True, default="")
    # When the handshake was sent (None: owed), and what the endpoint answered (bounded).
    validation_sent_at = models.DateTimeField(null=True, blank=True)
    validation_outcome = models.CharField(max_length=1000, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    # Delivery health, as the admin shows it.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.CharField(max_length=1000, blank=True, default="")

    def __str__(self) -> str:
        return self.id


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTERED = "deadLettered"
    DROPPED = "dropped"


class EventDelivery(models.Model):
    """One event owed to one subscription: written with the event (same transaction), claimed
    through its subscription's lease, retried on Event Grid's schedule until delivered,
    dead-lettered (reason, attempts and last outcome kept; re-deliverable) or dropped."""

    subscription = models.ForeignKey(EventSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(PublishedEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    created_at = models.DateTimeField()
    due_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=1000, blank=True, default="")
    dead_letter_reason = models.CharField(max_length=64, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "event deliveries"
        indexes = [
            # What a delivery loop sends next for a subscription: due rows in event order.
            models.Index(fields=["subscription", "status", "due_at"], name="delivery_due"),
            models.Index(fields=["status", "due_at"], name="delivery_status_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.subscription_id}"
