"""Router rules and classification (ACS Job Router 2023-11-01 §3.3 RouterRule, §4.4).

Plain Python over plain data. Rules that call out over HTTP (function, webhook) are evaluated by
a `RemoteRuleCaller` that the domain layer supplies, so this module never does I/O itself and
can be tested with a caller of its own; the domain runs it outside any database transaction.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from routing import limits
from routing.engine.expressions import ExpressionError, compile_expression
from routing.engine.selectors import selector_matches


class RuleError(Exception):
    """A rule could not be evaluated (bad expression result, failed HTTP call, wrong shape)."""


def _quote(value: Any) -> str:
    """How a message quotes a value: its repr, cut to `limits.MAX_QUOTED_VALUE_LENGTH`."""
    return limits.truncate(repr(value), limits.MAX_QUOTED_VALUE_LENGTH)


class RemoteRuleCaller(Protocol):
    def __call__(self, rule: Mapping[str, Any], payload: Mapping[str, Any]) -> Any:
        """POST `payload` as the rule says (function or webhook) and return the decoded JSON
        answer; raise RuleError on any failure."""


def no_remote_calls(rule: Mapping[str, Any], payload: Mapping[str, Any]) -> Any:
    raise RuleError(f"{rule.get('kind')} rules need an HTTP caller")


def evaluate_rule(
    rule: Mapping[str, Any], labels: Mapping[str, Any], *, remote: RemoteRuleCaller = no_remote_calls
) -> Any:
    """The value of a RouterRule for a job's labels.

    static → its `value`; expression → the expression over `job.<label>`; directMap → the labels
    themselves (callers turn them into `equal` selectors); function / webhook → the JSON the
    endpoint answers to `{"job": labels}`. Raises RuleError.
    """
    kind = rule.get("kind")
    if kind == "static":
        return rule.get("value")
    if kind == "expression":
        try:
            return compile_expression(rule["expression"]).evaluate(job=labels)
        except ExpressionError as exc:
            raise RuleError(f"expression {_quote(rule['expression'])}: {exc}") from exc
    if kind == "directMap":
        return dict(labels)
    if kind in ("function", "webhook"):
        return remote(rule, {"job": dict(labels)})
    raise RuleError(f"unknown rule kind {_quote(kind)}")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _selectors_from_value(value: Any, *, where: str) -> list[dict]:
    """A rule's answer as a list of selectors: a list of selector objects, or (directMap) a label
    map turned into `equal` selectors."""
    if isinstance(value, Mapping) and not {"key", "labelOperator"} <= set(value):
        return [{"key": k, "labelOperator": "equal", "value": v} for k, v in value.items()]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, Mapping) and "key" in s for s in value):
        raise RuleError(f"{where} must give a list of selectors, got {_quote(value)}")
    return [
        {"key": s["key"], "labelOperator": s.get("labelOperator", "equal"), "value": s.get("value"),
         **({"expiresAfterSeconds": s["expiresAfterSeconds"]} if s.get("expiresAfterSeconds") is not None else {}),
         **({"expedite": s["expedite"]} if s.get("expedite") is not None else {})}
        for s in value
    ]


def _pick_weighted(allocations: Sequence[Mapping[str, Any]], rng: random.Random) -> Mapping[str, Any]:
    point = rng.random() * sum(a["weight"] for a in allocations)
    for allocation in allocations:
        point -= allocation["weight"]
        if point < 0:
            return allocation
    return allocations[-1]


def attachment_selectors(
    attachment: Mapping[str, Any],
    labels: Mapping[str, Any],
    *,
    selectors_key: str,
    single_key: str,
    remote: RemoteRuleCaller = no_remote_calls,
    rng: random.Random | None = None,
) -> list[dict]:
    """Selectors one queue or worker selector attachment contributes (ACS §4.4).

    static: its selector; conditional: its selectors when the condition is true; passThrough:
    `{key, labelOperator, value = labels[key]}` (nothing when the job lacks the label);
    ruleEngine: the rule's selectors; weightedAllocation: one allocation drawn by weight.
    """
    kind = attachment["kind"]
    if kind == "static":
        return [dict(attachment[single_key])]
    if kind == "conditional":
        if _truthy(evaluate_rule(attachment["condition"], labels, remote=remote)):
            return [dict(s) for s in attachment[selectors_key]]
        return []
    if kind == "passThrough":
        if attachment["key"] not in labels:
            return []
        selector = {"key": attachment["key"], "labelOperator": attachment["labelOperator"], "value": labels[attachment["key"]]}
        if attachment.get("expiresAfterSeconds") is not None:
            selector["expiresAfterSeconds"] = attachment["expiresAfterSeconds"]
        return [selector]
    if kind == "ruleEngine":
        return _selectors_from_value(evaluate_rule(attachment["rule"], labels, remote=remote), where="ruleEngine rule")
    if kind == "weightedAllocation":
        chosen = _pick_weighted(attachment["allocations"], rng or random.Random())
        return [dict(s) for s in chosen[selectors_key]]
    raise RuleError(f"unknown attachment kind {_quote(kind)}")


@dataclass
class Classification:
    """The outcome of classifying a job: any of queue, priority and attached worker selectors
    (None / empty for what the policy does not set), or `error`."""

    queue_id: str | None = None
    priority: int | None = None
    worker_selectors: list[dict] = field(default_factory=list)
    error: str | None = None


def classify(
    policy: Mapping[str, Any],
    *,
    labels: Mapping[str, Any],
    current_queue_id: str | None,
    queues: Sequence[tuple[str, Mapping[str, Any]]],
    remote: RemoteRuleCaller = no_remote_calls,
    rng: random.Random | None = None,
) -> Classification:
    """Classify a job (ACS §4.4). `policy` has the stored ClassificationPolicy fields
    (`queueSelectorAttachments`, `fallbackQueueId`, `prioritizationRule`,
    `workerSelectorAttachments`); `queues` is every (queue id, labels with Id), in id order.

    The queue is the first queue (by id) whose labels satisfy all attached queue selectors; when
    none does, the job keeps its own queue, else the fallback queue; no queue at all is an error.
    """
    result = Classification()
    try:
        selectors: list[dict] = []
        for attachment in policy.get("queueSelectorAttachments") or []:
            selectors += attachment_selectors(
                attachment, labels, selectors_key="queueSelectors", single_key="queueSelector", remote=remote, rng=rng
            )
        if selectors:
            matching = [qid for qid, qlabels in queues if all(selector_matches(s, qlabels) for s in selectors)]
            result.queue_id = matching[0] if matching else None
        result.queue_id = result.queue_id or current_queue_id or policy.get("fallbackQueueId")
        if result.queue_id is None:
            result.error = "No queue matched the queue selectors and the policy has no fallback queue."
            return result
        rule = policy.get("prioritizationRule")
        if rule:
            result.priority = _priority(evaluate_rule(rule, labels, remote=remote))
        for attachment in policy.get("workerSelectorAttachments") or []:
            result.worker_selectors += attachment_selectors(
                attachment, labels, selectors_key="workerSelectors", single_key="workerSelector", remote=remote, rng=rng
            )
    except RuleError as exc:
        result.error = str(exc)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        result.error = f"classification failed: {_quote(exc)}"
    return result


def _priority(value: Any) -> int:
    """A prioritization rule's answer as a job priority (an integer-valued number in −100..100)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(f"prioritization rule gave {_quote(value)}, not a number")
    if not math.isfinite(value) or not limits.MIN_JOB_PRIORITY <= value <= limits.MAX_JOB_PRIORITY:
        raise RuleError(
            f"prioritization rule gave {_quote(value)}, outside {limits.MIN_JOB_PRIORITY}..{limits.MAX_JOB_PRIORITY}"
        )
    return int(value)


def batch_scores(
    rule: Mapping[str, Any],
    *,
    job_labels: Mapping[str, Any],
    selectors: Sequence[Mapping[str, Any]],
    workers: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    remote: RemoteRuleCaller,
) -> list[float]:
    """Best-worker scores from a function or webhook scoring rule (ACS §4.3).

    The payload carries `job` (labels) and `selectors` as `scoringParameters` ask (default
    both), plus `worker` (one call per worker) or, with `isBatchScoringEnabled`, `workers` in
    batches of `batchSize` (default 20), answered with a list of scores in the same order.
    """
    params = options.get("scoringParameters") or ["jobLabels", "workerSelectors"]
    base: dict[str, Any] = {}
    if "jobLabels" in params:
        base["job"] = dict(job_labels)
    if "workerSelectors" in params:
        base["selectors"] = [dict(s) for s in selectors]
    scores: list[float] = []
    if options.get("isBatchScoringEnabled"):
        size = int(options.get("batchSize") or 20)
        for start in range(0, len(workers), size):
            batch = workers[start : start + size]
            answer = remote(rule, {**base, "workers": [dict(w) for w in batch]})
            if isinstance(answer, Mapping):
                answer = answer.get("scores", answer.get("value"))
            if not isinstance(answer, list) or len(answer) != len(batch):
                raise RuleError(f"batch scoring answered {_quote(answer)}, expected {len(batch)} scores")
            scores += [_score(v) for v in answer]
        return scores
    return [_score(remote(rule, {**base, "worker": dict(w)})) for w in workers]


def _score(value: Any) -> float:
    if isinstance(value, Mapping):
        value = value.get("score", value.get("value"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError(f"a score must be a finite number, got {_quote(value)}")
    return float(value)

