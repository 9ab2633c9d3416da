"""Usage gating at session start: the session-creation rate limit and the token budgets.

Both decide through atomic store operations (``counter_try_consume``), never read-then-write, so
concurrent requests on any number of ingress replicas cannot overshoot a limit.

Token budgets (per user and per app, per calendar ``budget_period`` in UTC) count
``max(recorded usage, reservations)``:

- *recorded usage* is what the session actors write on every model call (``usage_totals``);
- a *reservation* of ``R`` tokens is taken by every new session (``token_reservation`` of its
  capability, else ``session_token_reservation``) on a per-period counter, atomically against the
  budget. It makes admission exact under concurrency: of N parallel creations against a budget
  with room for M reservations, exactly M succeed. Reservations of sessions that were created
  are not refunded: a period admits at most ``budget / R`` new sessions, and fewer once the real
  usage runs ahead of them. A creation refused after admission (a bad context, unmet prerequisites,
  a reused Idempotency-Key, a budget after the rate limit) gives its slot and reservations back.

A session may start when both views leave room for its reservation; a resumed session (or a
fresh runtime token) only needs the recorded usage to be under the budget. Runs already going
are not cut off: the broker gates entry, the runtime does not meter mid-turn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store.base import Store

RATE_WINDOW_S = 60
# What an admission took: (counter key, amount) pairs, given back if the creation is refused after all.
Taken = list[tuple[str, int]]


def counter_key(*parts: str) -> str:
    """Parts are quoted so that ids containing ':' cannot make two scopes share a counter."""
    return ":".join(quote(part, safe="") for part in parts)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime, str]:
    """The UTC calendar day or month around ``now``: start, end and a label such as "2026-11"."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1), start.strftime("%Y-%m-%d")
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end, start.strftime("%Y-%m")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class UsageLimits:
    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock

    async def admit(self, identity: Identity, reservation: int, creating: bool) -> Taken:
        """Raise 429 ``rate_limited`` or 403 ``usage_limit_exceeded``, or take what the start needs
        and return it, so that a creation refused later (by the broker) can give it back."""
        now = self.clock()
        taken: Taken = []
        if creating:
            taken += await self._rate_limit(identity, now)
        try:
            taken += await self._budgets(identity, reservation if creating else 0, now)
        except ApiError:
            await self.give_back(taken)  # refused by a budget: the rate slot is not spent either
            raise
        return taken

    async def give_back(self, taken: Taken) -> None:
        """Undo ``admit`` for a creation that did not happen."""
        for key, amount in taken:
            await self.store.counter_add(key, -amount)

    async def _rate_limit(self, identity: Identity, now: float) -> Taken:
        limit = self.settings.session_rate_per_minute
        if limit is None:
            return []
        window = int(now // RATE_WINDOW_S)
        key = counter_key("rate", "sessions", identity.app_id, identity.user_id, str(window))
        allowed, _ = await self.store.counter_try_consume(key, 1, limit)
        if not allowed:
            retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_S - now))
            raise ApiError(429, "rate_limited", f"Too many new sessions: at most {limit} a minute",
                           {"retry_after_s": retry_after}, headers={"Retry-After": str(retry_after)})
        return [(key, 1)]

    async def _budgets(self, identity: Identity, reservation: int, now: float) -> Taken:
        start, end, label = period_bounds(self.settings.budget_period, datetime.fromtimestamp(now, UTC))
        scopes = [("user", self.settings.token_budget_per_user, identity.user_id),
                  ("app", self.settings.token_budget_per_app, None)]
        taken: Taken = []
        try:
            for scope, budget, user_id in scopes:
                if budget is None:
                    continue
                used = (await self.store.usage_totals(identity.app_id, user_id=user_id,
                                                      since=_iso(start)))["total_tokens"]
                refused = ApiError(403, "usage_limit_exceeded",
                                   f"The {scope}'s token budget for {label} is spent (it renews at {_iso(end)})",
                                   {"scope": scope, "period": label, "budget": budget, "resets_at": _iso(end)})
                if used >= budget or used + reservation > budget:
                    raise refused
                if reservation:
                    key = counter_key("budget", scope, identity.app_id, user_id or "", label)
                    reserved, _ = await self.store.counter_try_consume(key, reservation, budget)
                    if not reserved:
                        raise refused
                    taken.append((key, reservation))
        except ApiError:
            # The user's reservation must not stay taken when the app's budget refuses the start.
            await self.give_back(taken)
            raise
        return taken
