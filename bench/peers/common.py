"""What both peer benchmarks share: the server, a fresh database per run, the load
average, and the figures every result line carries."""

import os
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit
import uuid

import asyncpg

DEFAULT_URL = os.environ.get("BATON_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:15432/postgres")


def loadavg() -> float:
    """1-minute load average: other work on this 2-core machine skews results."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


@asynccontextmanager
async def fresh_database(url: str, prefix: str):
    """Creates a database of its own for one run and yields its URL; drops it afterwards."""
    db = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        yield urlunsplit(urlsplit(url)._replace(path="/" + db))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


def figures(jobs: int, enqueue_batch: int, enqueue_s: float, drain_s: float, sync_commit: str,
            load_before: float, unlogged: int) -> dict:
    """The fields of a result line both peers report the same way."""
    return {
        "jobs": jobs,
        "enqueue_batch": enqueue_batch,
        "enqueue_per_sec": round(jobs / enqueue_s, 1),
        "drain_per_sec": round(jobs / drain_s, 1),
        "seconds": round(drain_s, 3),
        "enqueue_seconds": round(enqueue_s, 3),
        "synchronous_commit": sync_commit,
        "loadavg_1m": [load_before, loadavg()],
        "unlogged_tables": unlogged,
    }
