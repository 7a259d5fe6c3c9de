"""Ctrl-C during consumer.run: a graceful shutdown, then KeyboardInterrupt."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = textwrap.dedent(
    """
    import sys, time, pgqrs
    s = pgqrs.open(sys.argv[1]); s.admin.install(); s.admin.create_queue("sig")
    s.producer("sig").enqueue_batch([1, 2, 3])
    c = s.consumer("sig")
    def handle(m):
        print("handling", m.id, flush=True)
        time.sleep(0.5)  # still running when SIGINT arrives: must finish and be archived
    try:
        c.run(handle, concurrency=1, batch_size=1)
    except KeyboardInterrupt:
        print("interrupted", s.admin.count_archived("sig"), [w.status for w in s.admin.workers("sig") if w.role == "consumer"], flush=True)
    """
)


class SignalTest(unittest.TestCase):
    def test_ctrl_c_shuts_down_gracefully(self):
        dsn = "sqlite:" + os.path.join(tempfile.mkdtemp(), "sig.db")
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        p = subprocess.Popen([sys.executable, "-c", CHILD, dsn], stdout=subprocess.PIPE, text=True, env=env)
        first = p.stdout.readline()
        self.assertTrue(first.startswith("handling"), first)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0)
        last = out.strip().splitlines()[-1]
        self.assertTrue(last.startswith("interrupted"), out)
        archived = int(last.split()[1])
        self.assertGreaterEqual(archived, 1)  # the handler running at the signal was archived
        self.assertIn("'stopped'", last)


if __name__ == "__main__":
    unittest.main()
