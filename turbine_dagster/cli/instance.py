"""``turbine-instance-setup``: write the checked-in pool limits into the Dagster instance.

A fresh instance has no row for the ``gpu`` pool until a run first claims it, and a burst of queued
runs submitted before then was seen to exceed the default limit. Writing the row when the instance
is created makes the limit hold from the first run on.
"""

import sys

import dagster as dg

GPU_POOL = "gpu"


def ensure_pool_limits(instance: dg.DagsterInstance) -> int:
    limit = instance.get_concurrency_config().pool_config.default_pool_limit
    if limit is None:
        raise SystemExit("dagster.yaml sets no concurrency.pools.default_limit: the GPU queue would be unbounded")
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, limit)
    return limit


def main() -> int:
    with dg.DagsterInstance.get() as instance:
        limit = ensure_pool_limits(instance)
    print(f"pool '{GPU_POOL}': at most {limit} concurrent runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
