"""The analysts' ``summary`` of one merged daily document: pure arithmetic over its sessions.

Figures (all times in milliseconds, all counts of the kept events of this document):

- ``events``, ``sessions``: totals; ``firstEventAt``, ``lastEventAt``: epoch ms, ``None`` without events.
- ``actions``: count per action; ``refs``: count per ``ref`` (events without a ref are not counted there).
- ``transitions``: ``{action: {next action: count}}`` for consecutive events of one session.
- ``taskList``: time on the task list, one span per ``task_list:open`` closed by the next
  ``task_list:leave`` of the same session. A second ``open`` before a ``leave`` restarts the span (the
  leave of the first was lost); spans never closed in their session are counted in ``taskListUnclosed``,
  not timed.
- ``openToFormSave``, ``openToComplete``: from a ``task:open`` to the first ``task:form_save`` / the first
  ``task:complete`` that follows it in the same session before the next ``task:open``, ``task:back`` or
  ``task:cancel`` (refs are not matched: CHT's ``task:open`` carries the task's title key, the form events the
  form id).
- Each span figure is ``{"count", "totalMs", "minMs", "maxMs"}`` (``minMs``/``maxMs`` ``None`` when ``count``
  is 0); mean = ``totalMs / count``.
- ``droppedByCap``: this device's interactions of the day that the per-user cap refused; ``capReached``: the
  user's interactions of that day, all devices together, reached ``cap``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

_ATTEMPT_ENDS = frozenset({"task:open", "task:back", "task:cancel"})


class _Span:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, ms: int) -> None:
        self.count += 1
        self.total += ms
        self.min = ms if self.min is None else min(self.min, ms)
        self.max = ms if self.max is None else max(self.max, ms)

    def to_json(self) -> dict[str, int | None]:
        return {"count": self.count, "totalMs": self.total, "minMs": self.min, "maxMs": self.max}


def summarize(
    sessions: Sequence[Mapping[str, Any]], *, dropped: int, cap_reached: bool, cap: int
) -> dict[str, Any]:
    """The summary of a merged document's ``sessions``, ordered as ``merge_day`` writes them."""
    actions: Counter[str] = Counter()
    refs: Counter[str] = Counter()
    transitions: defaultdict[str, Counter[str]] = defaultdict(Counter)
    task_list, to_save, to_complete = _Span(), _Span(), _Span()
    unclosed = 0
    first: int | None = None
    last: int | None = None
    for session in sessions:
        events = session["events"]
        if not events:
            continue
        # a session's events are in time order: its first and last give its bounds
        start, end = events[0]["timestamp"], events[-1]["timestamp"]
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
        list_open: int | None = None
        attempt: int | None = None
        saved = completed = False
        previous: str | None = None
        for event in events:
            action: str = event["action"]
            ts: int = event["timestamp"]
            actions[action] += 1
            ref = event.get("ref")
            if ref is not None:
                refs[ref] += 1
            if previous is not None:
                transitions[previous][action] += 1
            previous = action

            if action == "task_list:open":
                if list_open is not None:
                    unclosed += 1
                list_open = ts
            elif action == "task_list:leave" and list_open is not None:
                task_list.add(ts - list_open)
                list_open = None

            if action in _ATTEMPT_ENDS:
                attempt = ts if action == "task:open" else None
                saved = completed = False
            elif attempt is not None and action == "task:form_save" and not saved:
                to_save.add(ts - attempt)
                saved = True
            elif attempt is not None and action == "task:complete" and not completed:
                to_complete.add(ts - attempt)
                completed = True
        if list_open is not None:
            unclosed += 1
    return {
        "events": sum(actions.values()),
        "sessions": len(sessions),
        "firstEventAt": first,
        "lastEventAt": last,
        "actions": dict(sorted(actions.items())),
        "refs": dict(sorted(refs.items())),
        "transitions": {a: dict(sorted(nxt.items())) for a, nxt in sorted(transitions.items())},
        "taskList": task_list.to_json(),
        "taskListUnclosed": unclosed,
        "openToFormSave": to_save.to_json(),
        "openToComplete": to_complete.to_json(),
        "droppedByCap": dropped,
        "capReached": cap_reached,
        "cap": cap,
    }
