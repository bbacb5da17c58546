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
import os
import time
import uuid
from importlib.metadata import version
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, QueueManager, Queries
from pgqueuer.types import QueueExecutionMode

DEFAULT_URL = "postgres://postgres@127.0.0.1:15432/postgres"


def loadavg() -> float:
    """1-minute load average: other work on this 2-core machine skews results."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + db))


async def bench(url: str, jobs: int, batch_size: int, enqueue_batch: int, consumers: int) -> dict:
    db = f"peers_pgq_{uuid.uuid4().hex[:10]}"
    load_before = loadavg()
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        db_url = with_db(url, db)
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
            "jobs": jobs,
            "enqueue_batch": enqueue_batch,
            "enqueue_per_sec": round(jobs / enqueue_s, 1),
            "drain_per_sec": round(jobs / drain_s, 1),
            "seconds": round(drain_s, 3),
            "enqueue_seconds": round(enqueue_s, 3),
            "synchronous_commit": sync_commit,
            "loadavg_1m": [load_before, loadavg()],
            "unlogged_tables": unlogged,
            "workers": f"{consumers} QueueManager(s) in 1 process, 1 asyncpg connection each, "
            "max_concurrent_tasks unlimited, uvloop",
        }
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("BATON_BENCH_POSTGRES_URL", DEFAULT_URL))
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
