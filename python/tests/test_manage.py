"""Flow limits, retention, counters and schedules from Python, on every backend."""

import threading
import time
import unittest
import uuid

import pgqrs
from test_queue import Base


class ManageTest(Base):
    def test_limits_and_retention(self):
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            self.assertEqual(s.admin.limits(q), pgqrs.QueueLimits())
            s.admin.set_limits(q, max_in_flight=2, rate=100, rate_period=1.5)
            got = s.admin.limits(q)
            self.assertEqual((got.max_in_flight, got.per_group, got.rate, got.rate_period, got.in_flight), (2, 0, 100, 1.5, 0))
            # The limit holds: a dequeue of 10 gets 2.
            s.producer(q).enqueue_batch(list(range(5)))
            c = s.consumer(q)
            self.assertEqual(len(c.dequeue(10, visibility_timeout=30)), 2)
            self.assertEqual(s.admin.limits(q).in_flight, 2)
            s.admin.set_limits(q)  # clears
            self.assertEqual(s.admin.limits(q).max_in_flight, 0)
            with self.assertRaises(pgqrs.InvalidArgument):
                s.admin.set_limits(q, max_in_flight=-1)
            with self.assertRaises(pgqrs.QueueNotFound):
                s.admin.limits("missing-" + uuid.uuid4().hex[:6])

            s.admin.set_retention(q, archived=3600, dead_letters=86400)
            self.assertEqual(s.admin.retention(q), {"archived": 3600.0, "dead_letters": 86400.0})
            with self.assertRaises(pgqrs.InvalidArgument):
                s.admin.set_retention(q, archived=-1)
            s.admin.recount()
            self.assertEqual(s.admin.metrics(q).leased, 2)

    def test_schedules(self):
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            name = "sched-" + uuid.uuid4().hex[:8]
            info = s.schedules.add(name, "@every 1s", queue=q, payload={"tick": True}, headers={"k": "v"})
            self.assertEqual((info.name, info.queue, info.payload, info.paused), (name, q, {"tick": True}, False))
            self.assertIsNotNone(info.next_run_at)
            self.assertIn(name, [x.name for x in s.schedules.list()])
            s.schedules.pause(name)
            self.assertTrue(s.schedules.get(name).paused)
            # Triggered by hand even while paused: one message with the schedule's headers.
            mid = s.schedules.trigger(name)
            c = s.consumer(q)
            [m] = c.dequeue(10, visibility_timeout=30)
            self.assertEqual((m.id, m.payload, m.headers["k"], m.headers["pgqrs-schedule"]), (mid, {"tick": True}, "v", name))
            c.archive(m)
            s.schedules.resume(name)

            # A Run loop with the scheduler fires it by itself.
            stop, got = threading.Event(), []

            def handle(msg):
                got.append(msg.headers.get("pgqrs-schedule"))
                stop.set()

            timer = threading.Timer(30, stop.set)
            timer.start()
            s.consumer(q).run(handle, scheduler=True, poll_interval=0.1, stop=stop)
            timer.cancel()
            self.assertEqual(got[:1], [name])

            s.schedules.delete(name)
            with self.assertRaises(pgqrs.ScheduleNotFound):
                s.schedules.get(name)
            with self.assertRaises(pgqrs.InvalidSchedule):
                s.schedules.add(name, "not a cron", queue=q)
            with self.assertRaises(pgqrs.InvalidArgument):
                s.schedules.add(name, 5, queue=q)


if __name__ == "__main__":
    unittest.main()
