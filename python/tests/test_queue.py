"""Tests of the pgqrs Python package on the backends of the test environment.

PGQRS_PY_DSNS lists the DSNs to test (space-separated); default: a SQLite file.
"""

import os
import tempfile
import threading
import time
import unittest
import uuid

import pgqrs


def dsns():
    v = os.environ.get("PGQRS_PY_DSNS", "").split()
    if v:
        return v
    d = tempfile.mkdtemp()
    return ["sqlite:" + os.path.join(d, "py.db")]


DSNS = dsns()


class Base(unittest.TestCase):
    def each(self):
        for dsn in DSNS:
            with self.subTest(dsn=dsn.split("://")[0].split(":")[0]):
                self._dsn = dsn
                with pgqrs.open(dsn) as s:
                    s.admin.install()
                    yield s


class QueueTest(Base):
    def test_enqueue_dequeue_archive(self):
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            p, c = s.producer(q), s.consumer(q)
            i = p.enqueue({"n": 1}, priority=1, headers={"h": "v"})
            ids = p.enqueue_batch([2, 3])
            self.assertEqual(len(ids), 2)
            ms = c.dequeue(10, visibility_timeout=30)
            self.assertEqual(sorted(m.id for m in ms), sorted([i] + ids))
            m = [m for m in ms if m.id == i][0]
            self.assertEqual(m.payload, {"n": 1})
            self.assertEqual(m.headers, {"h": "v"})
            c.archive(m)
            with self.assertRaises(pgqrs.MessageNotFound):
                c.archive(m)
            self.assertEqual(c.archive([x.id for x in ms if x.id != i]), [True, True])
            self.assertEqual(s.admin.metrics(q).archived, 3)
            with self.assertRaises(pgqrs.Duplicate) as e:
                p.enqueue(1, key="k")
                p.enqueue(2, key="k")
            self.assertGreater(e.exception.id, 0)

    def test_bad_input(self):
        with self.assertRaises(pgqrs.InvalidDSN):
            pgqrs.open("nope://x")
        with self.assertRaises(pgqrs.InvalidArgument):
            pgqrs.open(42)
        for s in self.each():
            with self.assertRaises(pgqrs.QueueNotFound):
                s.admin.get_queue("missing-" + uuid.uuid4().hex)
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            p = s.producer(q)
            with self.assertRaises(pgqrs.InvalidPayload):
                p.enqueue(object())
            with self.assertRaises(pgqrs.InvalidArgument):
                p.enqueue(1, priority="high")
            with self.assertRaises(pgqrs.InvalidArgument):
                p.enqueue(1, priority=99)
            with self.assertRaises(pgqrs.InvalidName):
                s.admin.create_queue("bad name!")
        s = pgqrs.open(DSNS[0])
        s.close()
        with self.assertRaises(pgqrs.StoreClosed):
            s.admin.queues()

    def test_error_codes_all_mapped(self):
        from pgqrs import _native, errors

        self.assertLessEqual(set(_native.call("codes", {})), errors.known_codes())

    def test_run_retries_and_dead_letters_concurrently(self):
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            p = s.producer(q)
            p.enqueue_batch(list(range(40)))
            p.enqueue("fail")
            stop = threading.Event()
            seen, lock = set(), threading.Lock()
            active, peak = [0], [0]

            def handle(m):
                if m.payload == "fail":
                    raise RuntimeError("boom")
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                time.sleep(0.02)  # I/O with the GIL released
                with lock:
                    active[0] -= 1
                    seen.add(m.payload)

            def watch():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if len(seen) == 40 and s.admin.count_dead_letters(q) == 1:
                        break
                    time.sleep(0.05)
                stop.set()

            threading.Thread(target=watch).start()
            s.consumer(q).run(handle, concurrency=8, batch_size=10, max_attempts=2, backoff=0.01, stop=stop)
            self.assertEqual(len(seen), 40)
            self.assertGreater(peak[0], 1)
            self.assertLessEqual(peak[0], 8)
            dl = s.admin.dead_letters(q)
            self.assertEqual(len(dl), 1)
            self.assertIn("boom", dl[0].last_error)
            self.assertEqual(s.admin.replay_dead_letters(q), 1)

    def test_run_settles_each_message_of_a_batch(self):
        # One thread takes the whole batch of 20 at once; each message's
        # outcome is still its own: the odd ones dead-letter at once, the
        # even ones are archived, and every message is handled once.
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            s.producer(q).enqueue_batch(list(range(20)))
            stop = threading.Event()
            calls, lock = [], threading.Lock()

            def handle(m):
                with lock:
                    calls.append(m.payload)
                if m.payload % 2:
                    raise pgqrs.PermanentError(f"odd {m.payload}")

            def watch():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if s.admin.count_archived(q) == 10 and s.admin.count_dead_letters(q) == 10:
                        break
                    time.sleep(0.05)
                stop.set()

            threading.Thread(target=watch).start()
            s.consumer(q).run(handle, concurrency=1, batch_size=20, stop=stop)
            self.assertEqual(sorted(calls), list(range(20)))
            self.assertEqual(s.admin.count_archived(q), 10)
            dead = s.admin.dead_letters(q)
            self.assertEqual(sorted(d.payload for d in dead), list(range(1, 20, 2)))
            self.assertTrue(all(d.last_error.endswith(f"odd {d.payload}") for d in dead), [d.last_error for d in dead])


@pgqrs.workflow("py-greet")
def greet(run, name):
    hello = run.step("hello", lambda: "hello, " + name)
    run.sleep("nap", 0.2)
    return run.step("shout", lambda: hello.upper())


class WorkflowTest(Base):
    def test_workflow_served_in_python(self):
        for s in self.each():
            rid = greet.trigger(s, "ada")
            stop = threading.Event()
            t = threading.Thread(target=greet.serve, args=(s,), kwargs={"stop": stop, "concurrency": 4, "poll_interval": 0.1})
            t.start()
            try:
                self.assertEqual(greet.result(s, rid, timeout=30), "HELLO, ADA")
                self.assertEqual(s.runs.status(rid), "SUCCESS")
            finally:
                stop.set()
                t.join()


if __name__ == "__main__":
    unittest.main()
