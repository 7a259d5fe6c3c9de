"""The quick start of docs/python.md runs as written."""

import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "python.md")


class DocsTest(unittest.TestCase):
    def test_quick_start_runs(self):
        with open(DOC) as f:
            doc = f.read()
        section = doc.split("## Quick start", 1)[1]
        code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
            out = subprocess.run([sys.executable, "-c", code], cwd=d, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            # The handler printed the message it was given.
            self.assertIn("{'to': 'ada@example.com'}", out.stdout)
            self.assertTrue(os.path.exists(os.path.join(d, "app.db")))


if __name__ == "__main__":
    unittest.main()
