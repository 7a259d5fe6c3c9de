"""Interop with Go: messages both ways, a Python-served workflow triggered and awaited from Go."""

import json
import os
import subprocess
import tempfile
import threading
import unittest
import uuid

import pgqrs

from test_queue import DSNS, Base, greet

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_bin = os.path.join(tempfile.mkdtemp(), "interop")
subprocess.run(["go", "build", "-o", _bin, "./python/tests/interop"], cwd=ROOT, check=True)


def go(*args):
    return subprocess.run([_bin, *args], check=True, capture_output=True, text=True, timeout=120).stdout.strip()


class InteropTest(Base):
    def test_messages_both_ways(self):
        for s in self.each():
            q = "py-" + uuid.uuid4().hex[:8]
            s.admin.create_queue(q)
            dsn = self._dsn
            go(dsn, "enqueue", q, '{"from":"go"}')
            ms = s.consumer(q).dequeue(1)
            self.assertEqual(ms[0].payload, {"from": "go"})
            s.producer(q).enqueue({"from": "python"})
            self.assertEqual(json.loads(go(dsn, "consume", q)), {"from": "python"})

    def test_workflow_triggered_from_go(self):
        for s in self.each():
            stop = threading.Event()
            t = threading.Thread(target=greet.serve, args=(s,), kwargs={"stop": stop, "poll_interval": 0.1})
            t.start()
            try:
                self.assertEqual(go(self._dsn, "workflow", "py-greet", "grace"), "HELLO, GRACE")
            finally:
                stop.set()
                t.join()


if __name__ == "__main__":
    unittest.main()
