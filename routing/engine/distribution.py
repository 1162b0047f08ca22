"""Distribution modes: which eligible worker is offered a job first (ACS 2023-11-01 §4.3).

Plain Python over plain data: the domain layer finds the eligible workers (queue, channel,
capacity, selectors, declines) and this module only orders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from routing.engine.expressions import ExpressionError, compile_expression

_EPOCH = datetime.min


@dataclass(frozen=True)
class Candidate:
    """An eligible worker as the distribution modes see it.

    `load_ratio` is consumed capacity / capacity (0..1); `idle_since` is when it last became idle
    (None sorts as most recently idle); `queue_priority` is the worker's priority in the job's
    queue (seed 002 Q5 extension; higher is offered first, default 0).
    """

    worker_id: str
    labels: Mapping[str, Any] = field(default_factory=dict)
    load_ratio: float = 0.0
    idle_since: datetime | None = None
    queue_priority: int = 0


Scorer = Callable[[Sequence[Candidate]], list[float]]


def _idle_key(c: Candidate) -> tuple:
    since = c.idle_since.replace(tzinfo=None) if c.idle_since else datetime.max
    return (since, c.worker_id)


def order_candidates(
    candidates: Iterable[Candidate],
    *,
    mode: Mapping[str, Any],
    last_offered_worker_id: str | None = None,
    scorer: Scorer | None = None,
) -> list[Candidate]:
    """Return the candidates in the order offers should go out.

    Workers with a higher `queue_priority` always come first; the mode orders each priority band:
    - roundRobin: by worker id, starting after `last_offered_worker_id` and wrapping around;
    - longestIdle: lowest load ratio, then idle the longest;
    - bestWorker: highest score first (lowest when `scoringRuleOptions.descendingOrder` is false),
      ties to the longest idle. `scorer` gives one score per candidate.
    """
    pool = list(candidates)
    bands: dict[int, list[Candidate]] = {}
    for c in pool:
        bands.setdefault(c.queue_priority, []).append(c)
    ordered: list[Candidate] = []
    kind = mode.get("kind", "longestIdle")
    for priority in sorted(bands, reverse=True):
        band = bands[priority]
        if kind == "roundRobin":
            band.sort(key=lambda c: c.worker_id)
            if last_offered_worker_id is not None:
                split = next((i for i, c in enumerate(band) if c.worker_id > last_offered_worker_id), len(band))
                band = band[split:] + band[:split]
        elif kind == "bestWorker":
            scores = (scorer or default_scorer_for({}, []))(band)
            descending = (mode.get("scoringRuleOptions") or {}).get("descendingOrder", True)
            sign = -1 if descending else 1
            indexed = sorted(
                range(len(band)), key=lambda i: (sign * scores[i], _idle_key(band[i]))
            )
            band = [band[i] for i in indexed]
        else:
            band.sort(key=lambda c: (c.load_ratio, *_idle_key(c)))
        ordered.extend(band)
    return ordered


def _logistic(x: float) -> float:
    # math.exp overflows past ~709: far below, the logistic is 0 to within a double anyway.
    if x < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def default_score(
    worker_labels: Mapping[str, Any], job_labels: Mapping[str, Any], selectors: Sequence[Mapping[str, Any]]
) -> float:
    """The default best-worker score when the policy has no scoring rule (ACS §4.3).

    Label part: the share of the job's labels the worker has with the same value (0..1).
    Selector part: the mean over the job's selectors of 1 per matching equal/notEqual selector,
    and for ordering operators the logistic 1/(1+e^-x) of x = (label − value)/value (reversed for
    "less" operators). The score is the sum of the two parts (0..2).
    """
    from routing.engine.selectors import selector_matches

    label_part = 0.0
    if job_labels:
        same = sum(1 for k, v in job_labels.items() if k in worker_labels and worker_labels[k] == v)
        label_part = same / len(job_labels)
    selector_part = 0.0
    if selectors:
        total = 0.0
        for s in selectors:
            op = s["labelOperator"]
            actual = worker_labels.get(s["key"])
            expected = s.get("value")
            if op in ("equal", "notEqual"):
                total += 1.0 if selector_matches(s, worker_labels) else 0.0
            elif isinstance(actual, (int, float)) and isinstance(expected, (int, float)) and not isinstance(
                actual, bool
            ):
                if not selector_matches(s, worker_labels):
                    continue
                denominator = expected if expected else 1
                x = (actual - expected) / denominator
                total += _logistic(-x if op.startswith("less") else x)
        selector_part = total / len(selectors)
    return label_part + selector_part


def default_scorer_for(job_labels: Mapping[str, Any], selectors: Sequence[Mapping[str, Any]]) -> Scorer:
    def score(band: Sequence[Candidate]) -> list[float]:
        return [default_score(c.labels, job_labels, selectors) for c in band]

    return score


def expression_scorer_for(source: str, job_labels: Mapping[str, Any]) -> Scorer:
    """Score each candidate with an expression rule over `job.<label>` and `worker.<label>`.
    A candidate whose expression fails or is not a number scores 0 (it stays eligible)."""
    compiled = compile_expression(source)

    def score(band: Sequence[Candidate]) -> list[float]:
        scores = []
        for c in band:
            try:
                value = compiled.evaluate(job=job_labels, worker=c.labels)
            except ExpressionError:
                value = 0
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            scores.append(float(value) if finite else 0.0)
        return scores

    return score
