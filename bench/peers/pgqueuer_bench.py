"""Drain benchmark for pgqueuer (PyPI), for comparison with Baton.

Creates a fresh database, installs pgqueuer's schema with its own API
(Queries.install, durability "durable" = all tables LOGGED), enqueues N noop
jobs in batches, then drains them with --consumers QueueManagers (one process,
uvloop) whose entrypoint does nothing, until the queue table is empty. Prints
one JSON line.

Usage: pgqueuer_bench.py --jobs 20000 --batch-size 100 [--consumers 5] [--url URL]
"""

import argparse
import asyncio
import json
import time
from importlib.metadata import version

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, QueueManager, Queries
from pgqueuer.types import QueueExecutionMode

from common import DEFAULT_URL, figures, fresh_database, loadavg


async def bench(url: str, jobs: int, batch_size: int, enqueue_batch: int, consumers: int) -> dict:
    load_before = loadavg()
    async with fresh_database(url, "peers_pgq") as db_url:
        conn = await asyncpg.connect(db_url)
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
        unlogged = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'pgqueuer%' "
            "AND relkind = 'r' AND relpersistence = 'u'"
        )

        # Enqueue N noop jobs in batches of `enqueue_batch` (one INSERT each).
        t0 = time.perf_counter()
        for start in range(0, jobs, enqueue_batch):
            n = min(enqueue_batch, jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        enqueue_s = time.perf_counter() - t0

        # Drain with `consumers` QueueManagers in this process, each on its own
        # asyncpg connection (pgqueuer's own drain benchmark uses 5).
        processed = 0

        async def noop(job) -> None:
            nonlocal processed
            processed += 1

        managers = []
        for _ in range(consumers):
            qm = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(db_url))))
            qm.entrypoint("noop")(noop)
            managers.append(qm)

        t0 = time.perf_counter()
        # mode=drain returns once the queue is empty and in-flight jobs are
        # done; the status-log buffer is flushed before run() returns.
        await asyncio.gather(
            *(qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain) for qm in managers)
        )
        drain_s = time.perf_counter() - t0

        remaining = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        await conn.close()
        if processed != jobs or remaining != 0:
            raise SystemExit(
                f"pgqueuer drain incomplete: processed={processed} remaining={remaining}"
            )
        return {
            "peer": "pgqueuer",
            "version": version("pgqueuer"),
            "batch_size": batch_size,
            **figures(jobs, enqueue_batch, enqueue_s, drain_s, sync_commit, load_before, unlogged),
            "workers": f"{consumers} QueueManager(s) in 1 process, 1 asyncpg connection each, "
            "max_concurrent_tasks unlimited, uvloop",
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=100, help="dequeue batch size")
    p.add_argument("--enqueue-batch", type=int, default=1000)
    p.add_argument("--consumers", type=int, default=5, help="QueueManagers (pgqueuer's benchmark default: 5)")
    a = p.parse_args()
    # uvloop, as `pgq run` uses when installed.
    result = uvloop.run(bench(a.url, a.jobs, a.batch_size, a.enqueue_batch, a.consumers))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
