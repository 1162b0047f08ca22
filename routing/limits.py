"""Bounds on everything the router accepts from outside (house style 15: bounded at the edge).

One table, read by the validators (`routing.validation`, so the REST API, the admin forms and the
desk share them), the request parser (`routing.api.parsers`), the expression language
(`routing.engine.expressions`) and what is stored from an error. The README's "Limits" section
lists the same values; `tests/test_api_bad_input.py` checks each edge.

Where the ACS documents a range we use it (job priority −100..100, ACS 2023-11-01 RouterJob
`priority`); elsewhere the bound is ours, chosen far above any real contact centre and far below
what would overflow a date, a 32-bit column or a request's time budget.
"""

from __future__ import annotations

from datetime import datetime, timezone

# --- request bodies ---------------------------------------------------------------------------
# Bytes of one request body; larger is 413 (settings.DATA_UPLOAD_MAX_MEMORY_SIZE is the same).
MAX_BODY_BYTES = 1024 * 1024
# Nesting of JSON arrays and objects in one body (the deepest ACS shape needs 7).
MAX_JSON_DEPTH = 64

# --- numbers ----------------------------------------------------------------------------------
# Durations in seconds (offerExpiresAfterSeconds, thresholdSeconds, expiresAfterSeconds): finite,
# 0 ≤ x ≤ 10 years, so `now + duration` always stays a valid date.
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600
# Job priority (ACS: "between -100 and 100"); also manualReclassify and classification results.
MIN_JOB_PRIORITY, MAX_JOB_PRIORITY = -100, 100
# Extensions: queue priority and a worker's per-queue priority.
MIN_QUEUE_PRIORITY, MAX_QUEUE_PRIORITY = -1000, 1000
# Worker capacity, a channel's capacityCostPerJob and maxNumberOfJobs.
MAX_CAPACITY = 1_000_000
# min/maxConcurrentOffers of a distribution mode, and scoring batchSize.
MAX_CONCURRENT_OFFERS = 100
MAX_BATCH_SIZE = 1000
# queueLength exception trigger threshold.
MAX_QUEUE_LENGTH_THRESHOLD = 1_000_000
# Numbers in labels, tags and selector values: finite, |x| ≤ 1e15 (integers stay exact doubles).
MAX_LABEL_NUMBER = 1e15

# --- strings and collections ------------------------------------------------------------------
MAX_ID_LENGTH = 255  # resource ids (path and body), channel and queue ids, names, codes
MAX_TEXT_LENGTH = 1024  # channelReference, label/tag string values, credentials, other strings
MAX_NOTE_LENGTH = 4096  # a note's message, a cancel note, a queue description
MAX_URI_LENGTH = 2048
MAX_EXPRESSION_LENGTH = 10_000
MAX_LABELS = 100  # keys in one labels/tags map (and its patch)
MAX_LIST_ITEMS = 100  # selectors, notes, channels, rules, actions, attachments, allocations
MAX_WORKER_QUEUES = 1000  # queues one worker serves
MAX_QUERY_TOKEN_LENGTH = 4096  # continuationToken

# --- date-times -------------------------------------------------------------------------------
# Any date-time a client sends, once converted to UTC. The earliest is datetime.min, which the
# official SDK tests send as a retryOfferAt in the past; year 1 at +14:00 lies before it.
EARLIEST_DATETIME = datetime.min.replace(tzinfo=timezone.utc)
LATEST_DATETIME = datetime(9000, 1, 1, tzinfo=timezone.utc)

# --- expressions (routing.engine.expressions) -------------------------------------------------
MAX_NUMBER_LITERAL_LENGTH = 100  # characters of one numeric literal
MAX_EXPRESSION_NODES = 2000  # operators, calls, literals and labels of one expression
MAX_TEXT_VALUE_LENGTH = 64 * 1024  # characters of any text value during an evaluation
MAX_TEXT_BUILT_PER_EVALUATION = 1024 * 1024  # characters all `&` of one evaluation may build
MAX_NUMBER_MAGNITUDE = 1e300  # |number| during an evaluation (beyond: "Numeric overflow")

# --- what is stored from an error -------------------------------------------------------------
MAX_STORED_ERROR_LENGTH = 1000  # classificationError and similar messages
MAX_QUOTED_VALUE_LENGTH = 80  # a value quoted inside an error message


def truncate(text: str, limit: int = MAX_STORED_ERROR_LENGTH) -> str:
    """`text` cut to at most `limit` characters, ending in "… (N characters)" when cut."""
    if len(text) <= limit:
        return text
    suffix = f"… ({len(text)} characters)"
    return text[: max(0, limit - len(suffix))] + suffix
