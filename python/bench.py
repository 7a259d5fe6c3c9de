"""Drain benchmark of the Python package, like `pgqrs bench --scenario drain-run`.

Prefill N messages, then drain them through consumer.run with a no-op handler;
prints messages per second. Usage: python3 python/bench.py DSN [N] [BATCH] [CONCURRENCY]
"""

import sys
import threading
import time
import uuid

import pgqrs


def main() -> None:
    dsn = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    conc = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    with pgqrs.open(dsn) as s:
        s.admin.install()
        q = "pybench-" + uuid.uuid4().hex[:8]
        s.admin.create_queue(q)
        p = s.producer(q)
        for i in range(0, n, 1000):
            p.enqueue_batch([{"job": j} for j in range(i, min(n, i + 1000))])
        stop = threading.Event()
        count = [0]
        lock = threading.Lock()

        def handle(m: pgqrs.Message) -> None:
            with lock:
                count[0] += 1
                if count[0] == n:
                    stop.set()

        start = time.monotonic()
        s.consumer(q).run(handle, batch_size=batch, concurrency=conc, stop=stop)
        took = time.monotonic() - start
        archived = s.admin.count_archived(q)
        print(f"python drain-run {conc}x{batch}: {archived} messages in {took:.2f}s: {archived / took:.0f} msgs/s")


if __name__ == "__main__":
    main()
