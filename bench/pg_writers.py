"""Benchmark: appends from 1 and from 4 writer processes into one PostgreSQL ledger, optionally
through a loopback proxy that adds network latency (issue 17).

Every write transaction locks the one ``chain_head`` row first, so appends from all writers form
one chain; what the lock costs depends on how long a transaction holds it, i.e. on how many round
trips to the server an append makes while holding it. This measures it: the same total number of
single-event appends done by one writer, then shared by four (each its own stream, as runners on
four hosts would), each run into a fresh database; the chain is verified after every run. With
``--latency-ms`` the writers reach the server through a proxy in this process that delays every
chunk by half the latency in each direction (no root or ``tc`` needed).

    uv run python bench/pg_writers.py [--url URL] [--events 400] [--latency-ms 0 50] [--batch 1]

``--url`` (default ``$DAYDREAM_TEST_PG``) must let its user create databases. Prints events/s per
run and the ratio of the four writers' wall time to the one writer's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

from daydream.ledger.store import Ledger, NewEvent


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` with ``delay_s`` added each way."""

    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Chunks keep their order; each leaves delay_s after it arrived (latency, not bandwidth).
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay_s, data))
        except ConnectionError:
            pass
        queue.put_nowait((0.0, None))
        await sender

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)


def _writer(url: str, worker: int, n: int, batch: int, start_at: float) -> None:
    ledger = Ledger.open(url)
    stream = f"writer:{worker}"
    version = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while version < n:
        size = min(batch, n - version)
        ledger.append([NewEvent(stream, "BenchTicked", {"i": version + j}, expected_version=version if j == 0 else None)
                       for j in range(size)])
        version += size
    ledger.close()


def run(url: str, writers: int, total: int, batch: int) -> float:
    """Wall time of ``writers`` processes appending ``total`` events between them (fresh database)."""
    import psycopg

    name = f"daydream_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db_url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        Ledger.init(db_url)[0].close()
        ctx = multiprocessing.get_context("spawn")
        start_at = time.time() + 2.0  # every process connected and imported before the clock starts
        procs = [ctx.Process(target=_writer, args=(db_url, w, total // writers, batch, start_at))
                 for w in range(writers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0, f"writer exited with {p.exitcode}"
        elapsed = time.time() - start_at
        ledger = Ledger.open(db_url)
        assert ledger.verify()[0] == total // writers * writers  # one gapless chain
        ledger.close()
        return elapsed
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DAYDREAM_TEST_PG"))
    parser.add_argument("--events", type=int, default=400, help="appends per run, shared by the writers")
    parser.add_argument("--batch", type=int, default=1, help="events per append")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DAYDREAM_TEST_PG")
    target = urlsplit(args.url)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.events} events per run, {args.batch} per append")
    for latency in args.latency_ms:
        url = args.url
        if latency:
            proxy = DelayProxy(target.hostname or "127.0.0.1", target.port or 5432, latency / 2000)
            netloc = target.netloc.rsplit(":", 1)[0] + f":{proxy.port}"
            url = urlunsplit(target._replace(netloc=netloc))
        one = run(url, 1, args.events, args.batch)
        four = run(url, 4, args.events, args.batch)
        print(f"latency {latency:>4.0f} ms: 1 writer {args.events / one:>8,.0f} events/s ({one:.2f} s), "
              f"4 writers {args.events / four:>8,.0f} events/s ({four:.2f} s); 4 writers / 1 writer wall time "
              f"{four / one:.2f}")


if __name__ == "__main__":
    main()
