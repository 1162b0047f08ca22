"""Shared helpers for domain operations: after-commit follow-ups, preconditions, upserts."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, ParamSpec, TypeVar

from django.db import IntegrityError, OperationalError, connection, models, transaction

from routing.errors import NotFound, PreconditionFailed
from routing.models import RouterTimer

logger = logging.getLogger("routing")

M = TypeVar("M", bound=models.Model)
P = ParamSpec("P")
R = TypeVar("R")

# PostgreSQL's deadlock_detected and serialization_failure: the database chose this transaction
# as the victim and rolled it back; run again, it succeeds.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
DEADLOCK_ATTEMPTS = 3


def retry_on_deadlock(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a domain operation again (up to 3 times in all) when the database rolled it back as
    a deadlock victim. Only an outermost call retries: inside an enclosing transaction the whole
    of it is gone, so the error goes up to whoever owns that transaction. The one lock order
    (`routing.services.assignment`) keeps deadlocks rare; this is the seat belt."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                victim = getattr(exc.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES
                if not victim or attempt == DEADLOCK_ATTEMPTS or connection.in_atomic_block:
                    raise
                logger.warning("%s: chosen as deadlock victim (attempt %d); retrying", fn.__name__, attempt)
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    return run


# No row has this id (ours are version-4 UUIDs), so a malformed id is simply not found.
NIL_UUID = uuid.UUID(int=0)


def parse_uuid(value: object) -> uuid.UUID:
    """An offer or assignment id as a UUID; the nil UUID (found nowhere) for anything else."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return NIL_UUID


def after_commit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run `fn` once the current transaction commits (at once outside one).

    `robust`: a failing follow-up (say, matching that hit a lock timeout) is logged and does not
    undo or fail the operation that already committed. The callback is a named function, not a
    `functools.partial`: Django's robust-callback logging reads `__qualname__`.
    """

    def follow_up() -> None:
        fn(*args, **kwargs)

    follow_up.__qualname__ = getattr(fn, "__qualname__", "follow_up")
    transaction.on_commit(follow_up, robust=True)


# The function that runs one owed-work row by id (claim and handle), registered by
# `routing.services.timers` when the app loads. Work owed by a lower module to a higher one
# (classification, exception rules) is data, not an upward call, so modules import only downward.
_owed_work_runner: Callable[[int], object] | None = None


def register_owed_work_runner(runner: Callable[[int], object]) -> None:
    global _owed_work_runner
    _owed_work_runner = runner


def owe(kind: str, target_id: str, now: datetime) -> None:
    """Record work owed after this change as a timer row due `now`, in the caller's transaction,
    and run it right after the commit. Should this process die first, the timer loop claims the
    row like any due timer: the work is never lost, and runs once (compare-and-set claim)."""
    timer = RouterTimer.objects.create(kind=kind, target_id=target_id, due_at=now)

    def run_owed() -> None:
        if _owed_work_runner is not None:
            _owed_work_runner(timer.pk)

    transaction.on_commit(run_owed, robust=True)


@dataclass(frozen=True)
class Precondition:
    """HTTP conditional-request headers on an upsert (ACS 2023-11-01 §2, conditional requests).

    `if_match` / `if_none_match` hold the raw header values (`*` or a list of quoted ETags);
    `if_unmodified_since` is a datetime. Checked under the row lock, inside the transaction.
    """

    if_match: str | None = None
    if_none_match: str | None = None
    if_unmodified_since: datetime | None = None

    @staticmethod
    def _etags(header: str) -> set[str]:
        tags = set()
        for part in header.split(","):
            part = part.strip()
            if part.startswith("W/"):
                part = part[2:]
            tags.add(part.strip('"'))
        return tags

    def check(self, obj: Any | None) -> None:
        """Raise PreconditionFailed (412) when the stored state does not satisfy the headers."""
        if self.if_match is not None:
            if obj is None:
                raise PreconditionFailed("If-Match: the resource does not exist.")
            tags = self._etags(self.if_match)
            if "*" not in tags and obj.etag not in tags:
                raise PreconditionFailed("If-Match: the ETag does not match the current version.")
        if self.if_none_match is not None and obj is not None:
            tags = self._etags(self.if_none_match)
            if "*" in tags or obj.etag in tags:
                raise PreconditionFailed("If-None-Match: the resource exists in that version.")
        if self.if_unmodified_since is not None and obj is not None:
            if obj.updated_at.replace(microsecond=0) > self.if_unmodified_since:
                raise PreconditionFailed("If-Unmodified-Since: the resource was modified since then.")


def locked_get(model: type[M], pk: str, *, what: str) -> M:
    """Fetch a row under a row lock (PostgreSQL; SQLite's write lock covers it) or raise NotFound."""
    obj = model._default_manager.select_for_update().filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{what} {pk!r} was not found.")
    return obj


def upsert(
    model: type[M],
    *,
    pk: str,
    now: datetime,
    precondition: Precondition | None,
    apply: Callable[[M, bool], Callable[[], None] | None],
) -> tuple[M, bool]:
    """Create or update one resource by id under a row lock; returns (object, created).

    `apply(obj, created)` validates and sets fields (and may register after-commit work); it may
    return a callable that runs once the row is saved (to write child rows). Two
    concurrent creates of one id race on the primary key: the loser retries as an update.
    """
    for attempt in range(2):
        try:
            with transaction.atomic():
                found = model._default_manager.select_for_update().filter(pk=pk).first()
                if precondition is not None:
                    precondition.check(found)
                created = found is None
                obj = model(pk=pk, created_at=now, updated_at=now) if found is None else found
                after_save = apply(obj, created)
                obj.touch(now)  # type: ignore[attr-defined]  # every router resource has touch()
                if created:
                    obj.save(force_insert=True)
                else:
                    obj.save()
                if after_save is not None:
                    after_save()
                return obj, created
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")
