"""Drain benchmark for awa-pg (PyPI; Rust engine with Python bindings), for comparison with Baton.

Creates a fresh database, runs awa's own migrations (AsyncClient.migrate) and
activates its queue-storage engine (AsyncClient.install_queue_storage),
enqueues N noop jobs with enqueue_many_copy in batches, then drains them with
one AsyncClient worker runtime whose handler does nothing. The drain is timed
from start() until the last handler returned and a graceful shutdown() has
flushed every completion to the database; awa's queue stats are then checked
(untimed) to confirm all N jobs are completed. Prints one JSON line.

Usage: awa_bench.py --jobs 20000 [--max-workers 50] [--url URL]
"""

import argparse
import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import awa

DEFAULT_URL = "postgres://postgres@127.0.0.1:15432/postgres"
QUEUE = "bench"


@dataclass
class Noop:
    seq: int


def loadavg() -> float:
    """1-minute load average: other work on this 2-core machine skews results."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def with_db(url: str, db: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + db))


async def completed(client: awa.AsyncClient) -> tuple[int, int]:
    """(completed_last_hour, still queued or running) for the bench queue."""
    for s in await client.queue_stats():
        if s.queue == QUEUE:
            return s.completed_last_hour, s.total_queued + s.running
    return 0, 0


async def bench(url: str, jobs: int, max_workers: int, enqueue_batch: int, extra: dict) -> dict:
    db = f"peers_awa_{uuid.uuid4().hex[:10]}"
    load_before = loadavg()
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        db_url = with_db(url, db)
        conn = await asyncpg.connect(db_url)
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
        client = awa.AsyncClient(db_url, max_connections=max_workers + 10)
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
        await client.start([queue_cfg])
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
        done, pending = await completed(client)
        await client.close()
        await conn.close()
        if processed != jobs or done < jobs or pending != 0:
            raise SystemExit(f"awa drain incomplete: handled={processed} completed={done} pending={pending}")
        return {
            "peer": "awa-pg",
            "version": version("awa-pg"),
            "batch_size": None,
            "jobs": jobs,
            "enqueue_batch": enqueue_batch,
            "enqueue_per_sec": round(jobs / enqueue_s, 1),
            "drain_per_sec": round(jobs / drain_s, 1),
            "seconds": round(drain_s, 3),
            "enqueue_seconds": round(enqueue_s, 3),
            "handled_seconds": round(handled_s, 3),
            "synchronous_commit": sync_commit,
            "loadavg_1m": [load_before, loadavg()],
            "unlogged_tables": unlogged,
            "workers": f"1 AsyncClient, queue config {queue_cfg}, "
            f"max_connections={max_workers + 10}, other settings default",
        }
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("BATON_BENCH_POSTGRES_URL", DEFAULT_URL))
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--max-workers", type=int, default=50, help="awa's documented default")
    p.add_argument("--enqueue-batch", type=int, default=1000)
    p.add_argument("--queue-extra", default="{}", help='extra queue config JSON, e.g. {"claimers": 2}')
    a = p.parse_args()
    result = asyncio.run(bench(a.url, a.jobs, a.max_workers, a.enqueue_batch, json.loads(a.queue_extra)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
