#!/usr/bin/env python3
"""The README's first command, scripts/demo.sh, as CI runs it: with the binary
already built (SLUICE_BIN, SLUICE_DEMO_SKIP_SETUP=1) and a private state
directory. It must finish, print a health matrix in which every dataset is
fresh, stop what it started, and work again on the same state with a second
round of runs.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pgfixture  # noqa: E402

DATASETS = ["ad_assets", "ad_classifications", "ad_thumbnails", "amazon_reviews", "competitor_ads",
            "meta_ads_performance", "reddit_data", "templates_scraped"]
JOB_TYPES = ["meta_sync", "asset_download", "competitor_scrape", "template_scrape", "reddit_scrape",
             "amazon_review_scrape"]


class Demo(unittest.TestCase):

    def setUp(self):
        # under /tmp and traversable: as root the embedded Postgres runs as the postgres user
        self.home = tempfile.mkdtemp(prefix="sluice-demo-", dir="/tmp")
        os.chmod(self.home, 0o755)
        self.started_db = False

    def tearDown(self):
        env = pgfixture.clean_env({"SLUICE_HOME": self.home})
        subprocess.run([pgfixture.sluice_bin(), "db", "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)

    def demo(self):
        env = pgfixture.clean_env({"SLUICE_HOME": self.home, "SLUICE_DEMO_SKIP_SETUP": "1",
                                   "SLUICE_DEMO_TIMEOUT": "240"})
        env = {k: v for k, v in env.items()
               if "proxy" not in k.lower() and not k.startswith(("APIFY_", "LLM_", "META_"))}
        env.pop("SLUICE_CONFIG", None)
        env.pop("SLUICE_HANDLERS", None)
        proc = subprocess.run([os.path.join(harness.SOURCE, "scripts", "demo.sh")], env=env,
                              capture_output=True, text=True, timeout=420)
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, out)
        return proc.stdout

    def test_bad_settings_stop_it_before_it_starts_anything(self):
        # a bad SLUICE_DEMO_TIMEOUT stopped the demo with "abc: unbound variable"
        # once the brand was set up and its jobs were queued
        base = pgfixture.clean_env({"SLUICE_HOME": self.home, "SLUICE_DEMO_SKIP_SETUP": "1",
                                    "SLUICE_BIN": pgfixture.sluice_bin()})
        for env, message in (
                ({"SLUICE_DEMO_TIMEOUT": "abc"},
                 "SLUICE_DEMO_TIMEOUT must be a whole number of seconds (at least 1), not 'abc'"),
                ({"SLUICE_DEMO_TIMEOUT": "0"},
                 "SLUICE_DEMO_TIMEOUT must be a whole number of seconds (at least 1), not '0'"),
                ({"SLUICE_BIN": "/nonexistent/sluice"}, "SLUICE_BIN: '/nonexistent/sluice' is not an executable file")):
            proc = subprocess.run([os.path.join(harness.SOURCE, "scripts", "demo.sh")], env=dict(base, **env),
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (2, "", message + "\n"))
            self.assertEqual(os.listdir(self.home), [])

    def health_section(self, out):
        m = re.search(r"^==> dataset health.*?$(.*?)^==> recent runs", out, re.S | re.M)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def assert_all_fresh(self, out):
        health = self.health_section(out)
        for key in DATASETS:
            line = next((ln for ln in health.splitlines() if re.search(r"\b%s\b" % key, ln)), None)
            self.assertIsNotNone(line, f"{key} missing from the health matrix:\n{health}")
            self.assertIn("fresh", line, f"{key} is not fresh:\n{health}")
            self.assertNotRegex(line, r"\b(never|stale|failing|running)\b", health)

    def test_demo_twice(self):
        out = self.demo()
        self.assertIn("SIMULATES Apify", out)
        for var in ("APIFY_TOKEN", "LLM_API_KEY", "META_ACCESS_TOKEN"):
            self.assertIn(var, out)
        self.assert_all_fresh(out)
        self.assertIn("round 1", out)
        competitor = re.search(r"competitor ([0-9a-f-]{36})", out).group(1)
        runs = out.split("==> recent runs", 1)[1]
        for t in JOB_TYPES:
            self.assertIn(t[:10], runs)
        # it stopped what it started
        env = pgfixture.clean_env({"SLUICE_HOME": self.home})
        status = subprocess.run([pgfixture.sluice_bin(), "db", "status"], env=env, capture_output=True,
                                text=True, timeout=120).stdout
        self.assertRegex(status, r"status:\s+stopped")

        out = self.demo()
        self.assert_all_fresh(out)
        self.assertIn("round 2", out)
        runs = out.split("==> recent runs", 1)[1].split("==> done", 1)[0]
        completed = [ln for ln in runs.splitlines() if "completed" in ln]
        self.assertEqual(len(completed), 12, runs)
        self.assertNotIn("failed", runs)
        # the same brand and competitor: the set-up is idempotent
        self.assertEqual(re.search(r"competitor ([0-9a-f-]{36})", out).group(1), competitor)


if __name__ == "__main__":
    unittest.main(verbosity=2)
