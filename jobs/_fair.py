"""Fair sharing of the workers between tenants: who gets the next free slots.

:meth:`qldm.jobs.store.JobStore.claim` asks :func:`fair_shares` how many of its free slots go to
each tenant with queued work: one slot at a time to the tenant with the fewest jobs running
(ties: the tenant whose oldest queued job is older), never past ``max_per_tenant`` running
jobs of one tenant. A tenant that floods the queue thus takes the free slots only while nobody
else waits, and with ``max_per_tenant`` below the number of workers it never holds them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["fair_shares"]


def fair_shares(
    waiting: Sequence[tuple[str, Any, int]],
    running: Mapping[str, int],
    *,
    slots: int,
    max_per_tenant: int | None = None,
) -> dict[str, int]:
    """How many of ``slots`` free slots each waiting tenant gets.

    Args:
        waiting: ``(tenant, oldest queued job's creation time, queued jobs)`` per tenant with
            queued jobs.
        running: running jobs per tenant (tenants with none may be left out).
        slots: free slots to hand out.
        max_per_tenant: most running jobs per tenant (``None``: no limit).

    Returns:
        tenant -> slots (tenants that get none are left out); the values sum to at most
        ``slots``.
    """
    load = {tenant: running.get(tenant, 0) for tenant, _, _ in waiting}
    left = {tenant: queued for tenant, _, queued in waiting}
    oldest = {tenant: created for tenant, created, _ in waiting}
    shares: dict[str, int] = {}
    for _ in range(max(0, slots)):
        eligible = [
            t for t in load if left[t] > 0 and (max_per_tenant is None or load[t] < max_per_tenant)
        ]
        if not eligible:
            break
        tenant = min(eligible, key=lambda t: (load[t], oldest[t], t))
        shares[tenant] = shares.get(tenant, 0) + 1
        load[tenant] += 1
        left[tenant] -= 1
    return shares
