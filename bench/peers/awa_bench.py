"""Drain benchmark for awa-pg (PyPI; Rust engine with Python bindings), for comparison with Baton.

Creates a fresh database, runs awa's own migrations (AsyncClient.migrate) and
activates its queue-storage engine (AsyncClient.install_queue_storage),
enqueues N noop jobs with enqueue_many_copy in batches, then drains them with
one AsyncClient worker runtime whose handler does nothing. The drain is timed
from start() until the last handler returned and a graceful shutdown() has
flushed every completion to the database; then (untimed) awa's list_jobs must
show no job left available or running. Prints one JSON line.

Usage: awa_bench.py --jobs 20000 [--max-workers 256] [--url URL]
"""

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from importlib.metadata import version

import asyncpg
import awa

from common import DEFAULT_URL, figures, fresh_database, loadavg
QUEUE = "bench"


@dataclass
class Noop:
    seq: int


async def leftover(client: awa.AsyncClient) -> int:
    """Jobs of the bench queue still available or running (awa's list_jobs API).

    (queue_stats() would also give completed counts, but it takes minutes
    after a 20k-job drain on this machine.)"""
    n = 0
    for state in ("available", "running"):
        n += len(await client.list_jobs(state=state, queue=QUEUE, limit=10))
    return n


async def bench(
    url: str,
    jobs: int,
    max_workers: int,
    max_connections: int,
    poll_interval_ms: int,
    enqueue_batch: int,
    extra: dict,
) -> dict:
    load_before = loadavg()
    async with fresh_database(url, "peers_awa") as db_url:
        conn = await asyncpg.connect(db_url)
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
        client = awa.AsyncClient(db_url, max_connections=max_connections)
        await client.migrate()
        # A fresh database migrates to the legacy "canonical" engine; the first
        # worker runtime would then switch it to queue storage (awa 0.6's
        # engine). Activate queue storage up front so the timed drain does not
        # include that switch and enqueue_many_copy (COPY) is available.
        await client.install_queue_storage()
        unlogged = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'awa' AND c.relkind IN ('r', 'p') AND c.relpersistence = 'u'"
        )

        processed = 0

        @client.task(Noop, queue=QUEUE)
        async def noop(job) -> None:
            nonlocal processed
            processed += 1

        t0 = time.perf_counter()
        for start in range(0, jobs, enqueue_batch):
            batch = [Noop(seq=i) for i in range(start, min(start + enqueue_batch, jobs))]
            await client.enqueue_many_copy(batch, queue=QUEUE)
        enqueue_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        queue_cfg = {"name": QUEUE, "max_workers": max_workers, **extra}
        await client.start([queue_cfg], poll_interval_ms=poll_interval_ms)
        deadline = t0 + 600
        while processed < jobs:
            if time.perf_counter() > deadline:
                raise SystemExit(f"awa drain timed out: handled={processed}")
            await asyncio.sleep(0.005)
        handled_s = time.perf_counter() - t0
        # Graceful shutdown waits for in-flight jobs and flushes the batched
        # completions, so every job's completion is committed when it returns.
        await client.shutdown(timeout_ms=30000)
        drain_s = time.perf_counter() - t0
        pending = await leftover(client)
        # Informational: completions recorded in awa's queue-storage receipts
        # (an internal table of awa 0.6.x).
        receipts = await conn.fetchval(
            "SELECT coalesce(sum(completed_count), 0) FROM awa.receipt_completion_batches "
            "WHERE queue = $1",
            QUEUE,
        )
        await client.close()
        await conn.close()
        if processed != jobs or pending != 0:
            raise SystemExit(f"awa drain incomplete: handled={processed} pending={pending}")
        return {
            "peer": "awa-pg",
            "version": version("awa-pg"),
            "batch_size": None,
            **figures(jobs, enqueue_batch, enqueue_s, drain_s, sync_commit, load_before, unlogged),
            "handled_seconds": round(handled_s, 3),
            "completed_receipts": receipts,
            "workers": f"1 AsyncClient, queue config {queue_cfg}, max_connections="
            f"{max_connections}, poll_interval_ms={poll_interval_ms}, rest default",
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--jobs", type=int, default=20000)
    # Defaults follow awa's own Python benchmark (awa-python/scripts/benchmark_runtime.py).
    p.add_argument("--max-workers", type=int, default=256)
    p.add_argument("--max-connections", type=int, default=50)
    p.add_argument("--poll-interval-ms", type=int, default=50)
    p.add_argument("--enqueue-batch", type=int, default=1000)
    p.add_argument("--queue-extra", default="{}", help='extra queue config JSON, e.g. {"claimers": 2}')
    a = p.parse_args()
    extra = json.loads(a.queue_extra)
    result = asyncio.run(
        bench(a.url, a.jobs, a.max_workers, a.max_connections, a.poll_interval_ms,
              a.enqueue_batch, extra)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
