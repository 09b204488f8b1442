"""The Evaluator: which campaigns match one vehicle's facts, decided by durable_rules.

A compiled Python predicate (rules.conditions) picks the candidate campaigns; the facts go to
the durable_rules ruleset of each candidate (one per campaign), which decides. Its traps, all
handled here: facts are asserted, not events; each evaluation has its own sid, deleted in
``finally`` (1024 live sids raise MemoryError); the stock Host's timer threads call the C core
without locks, so one thread-less host per process is used, behind one lock; an Evaluator that
is closed (or collected) frees its rulesets with ``delete_ruleset``; facts go in flat, numbers,
booleans and strings only; new rulesets are scrubbed (see _scrub). rules.durable_json handles
the rest (a guard in every rule, ``$or`` for ``in``, the C core's size limits).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import durable_rules_engine as core
from durable.engine import Closure, Host

from rules.campaign import Campaign
from rules.conditions import compile_predicate
from rules.durable_json import GUARD, compile_condition, field
from rules.facts import json_encoder

log = logging.getLogger(__name__)
SCRUB = "milepost__scrub"  # set only on _scrub's facts
_EMPTY: dict[str, Any] = {}
_encode = json_encoder(ensure_ascii=True)
STATE_SLOTS = 8  # MAX_STATE_NODES of durable_rules' state.c: its first pool of sids


class _QuietHost(Host):
    """durable_rules' Host without the timer threads that dispatch timers and queued actions."""

    def _run(self) -> None:
        """Start nothing: no timers are used, and the stock threads would skip the lock."""


_lock = threading.RLock()
_host: _QuietHost | None = None
_numbers = itertools.count(1)  # ruleset names and sids, never reused within a process


def _reset_lock_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a lock held by another thread at fork time would never be freed


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _get_host() -> _QuietHost:
    global _host
    if _host is None:
        _host = _QuietHost()
    return _host


def _no_action(c: Closure) -> None:
    """Rules need an action; the Evaluator only asks whether one is due, never runs it."""


def _free(names: list[str]) -> None:
    """Unregister the rulesets and free their C memory (the Host has no call for this)."""
    with _lock:
        host = _get_host()
        for name in names:
            ruleset = host._ruleset_directory.pop(name, None)
            if ruleset is not None:
                host._ruleset_list.remove(ruleset)
                core.delete_ruleset(ruleset._handle)


def _fires(handle: int, text: str, sid: str) -> bool:
    """Whether the fact ``text`` (with ``sid``) matches a rule of ruleset ``handle``."""
    try:
        code, state = core.assert_fact(handle, text)
        if code == 1:  # nothing matched
            return False
        if code != 0:  # 2 would mean a reused sid
            raise RuntimeError(f"durable_rules answered {code} to a fact")
        return core.start_action_for_state(handle, state) is not None
    finally:
        core.delete_state(handle, sid)


def _scrub(handle: int) -> None:
    """Give a new ruleset's sid slots a clean action context before real facts arrive.

    durable_rules 2.0.28 mallocs sid state without initialising its action context, and
    delete_state frees whatever pointers it finds there: on a used heap, a double free or a
    segfault (found by the property test in tests/test_rules_engine.py). A state whose action
    ran to completion leaves the context NULL, and a freed slot is the next one reused; so after
    every slot of the first pool has been through a matching rule once, delete_state is safe
    for good, as long as at most a few sids are live at once (one, under _lock).
    """
    sids = [f"scrub{i}" for i in range(1, STATE_SLOTS)]
    for sid in sids:
        code, state = core.assert_fact(handle, json.dumps({"sid": sid, GUARD: 1, SCRUB: 1}))
        if code != 0 or not core.start_action_for_state(handle, state):
            raise RuntimeError("durable_rules did not run the scrub rule")
        while core.complete_and_start_action(handle, state):
            pass
    for sid in sids:
        core.delete_state(handle, sid)


def _fields_by_scope(names: Iterable[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    by_scope: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(names):
        scope, _, key = name.partition(".")
        by_scope.setdefault(scope, []).append((key, field(name)))
    return list(by_scope.items())


class Evaluator:
    """Matches facts against campaigns; every match returned was confirmed by durable_rules."""

    def __init__(self, campaigns: Sequence[Campaign]) -> None:
        self.campaigns = tuple(sorted(campaigns, key=lambda c: (-c.priority, c.id)))
        self.disagreements = 0  # candidates durable_rules rejected: a bug, logged
        everything = list(range(len(self.campaigns)))
        vehicle = [i for i in everything if self.campaigns[i].subject == "vehicle"]
        self._filters = {
            flag: (compile_predicate([self.campaigns[i].when for i in chosen]), chosen)
            for flag, chosen in ((True, everything), (False, vehicle))
        }
        # Each ruleset gets only its campaign's facts: the C core parses every field it is sent
        # (their few fields are 40 % of an assert's time). Per scope: (fact, its field).
        self._fields = [_fields_by_scope(c.when.facts()) for c in self.campaigns]
        rulesets: dict[str, dict[str, Any]] = {}
        for campaign in self.campaigns:
            rules = {
                f"r{k}": {"all": [{"m": expression}], "run": _no_action}
                for k, expression in enumerate(compile_condition(campaign.when))
            }
            if rules:  # Ruleset() takes "run" out of each rule: one fresh dict per ruleset
                scrub = {"$and": [{"$gt": {GUARD: 0}}, {SCRUB: 1}]}
                rules["scrub"] = {"all": [{"m": scrub}], "run": _no_action}
            rulesets[f"milepost{next(_numbers)}"] = rules
        self._closed = False
        self._finalizer = weakref.finalize(self, _free, list(rulesets))
        self._handles: list[int | None] = []
        with _lock:
            host = _get_host()
            for name, rules in rulesets.items():
                if not rules:  # a condition that never holds: no ruleset at all
                    self._handles.append(None)
                    continue
                try:
                    host.register_rulesets({name: rules})
                except Exception as exc:  # a limit of the C core that validation missed
                    self.close()
                    raise RuntimeError(f"durable_rules refused a campaign: {exc}") from exc
                handle: int = host.get_ruleset(name)._handle
                self._handles.append(handle)
                _scrub(handle)

    def matches(self, facts: Mapping[str, Any], *, customer_campaigns: bool) -> list[Campaign]:
        """Campaigns matching ``facts``, highest priority first (then id).

        Vehicle campaigns always; customer campaigns only if ``customer_campaigns`` (the
        customer's primary vehicle), so a customer is matched once however many cars they own.
        """
        predicate, chosen = self._filters[customer_campaigns]
        candidates = [chosen[j] for j in predicate(facts)]
        if not candidates:
            return []
        confirmed = self._decide(facts, candidates)
        if len(confirmed) != len(candidates):  # a bug in rules.conditions or rules.durable_json
            self.disagreements += 1
            ids = [self.campaigns[i].id for i in candidates if i not in confirmed]
            log.error("durable_rules rejected what the Python predicate matched: %s", ids)
        return [self.campaigns[i] for i in candidates if i in confirmed]

    def predicate_only(
        self, facts: Mapping[str, Any], *, customer_campaigns: bool = True
    ) -> list[Campaign]:
        """What the Python predicate alone matches: a benchmark baseline, no durable_rules."""
        predicate, chosen = self._filters[customer_campaigns]
        return [self.campaigns[chosen[j]] for j in predicate(facts)]

    def decide(self, facts: Mapping[str, Any]) -> list[Campaign]:
        """What durable_rules alone matches among all campaigns, without the pre-filter."""
        return [self.campaigns[i] for i in sorted(self._decide(facts, range(len(self.campaigns))))]

    def close(self) -> None:
        """Free the durable_rules rulesets; the Evaluator refuses work afterwards."""
        with _lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decide(self, facts: Mapping[str, Any], indices: Iterable[int]) -> set[int]:
        number = next(_numbers)
        sid = str(number)
        confirmed = set()
        with _lock:
            if self._closed:  # checked under the lock: a freed handle number may be reused
                raise RuntimeError("this Evaluator is closed")
            for i in indices:
                handle = self._handles[i]
                if handle is None:
                    continue
                fact: dict[str, Any] = {"sid": sid, GUARD: number}
                for scope, names in self._fields[i]:
                    values = facts.get(scope) or _EMPTY
                    for key, name in names:
                        value = values.get(key)
                        if value is not None:
                            fact[name] = value
                try:
                    text = _encode(fact)
                except (TypeError, ValueError) as exc:  # a date, NaN: numbers only
                    raise TypeError(f"durable_rules takes numbers and text, not: {exc}") from None
                if _fires(handle, text, sid):
                    confirmed.add(i)
        return confirmed
