#!/usr/bin/env python3
"""SIGHUP reads the config file again: `sluice serve` applies the settings that
can change while it runs (http_limit lines among them, merged again with the
limits handler code set), refuses a file that does not load as a whole
(keeping every setting in force, and still reloading the handlers), and keeps
the value in force of a setting that takes a restart, with a warning.

A real daemon against a fresh database; its handler's requests go over
loopback to the fixture server (tests/fixtures/http_fixture.py), which counts
the requests in flight at once: the limit in force, as the API would see it.
"""

import json
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# n requests at once through the limiter "api" (limit_key), each answered after
# `delay` ms; with code > 0 the run first sets the code's concurrency for "api"
# (it stays for later runs: the limiters are the process's).
BURST_HANDLER = """
return {
  label = "Burst",
  params = {
    url = { type = "string", required = true },
    n = { type = "integer", default = 8 },
    delay = { type = "integer", default = 300 },
    code = { type = "integer", default = 0 },
  },
  max_retries = 0,
  run = function(job)
    local p = job.params
    if p.code > 0 then sluice.http.limit("api", { concurrency = p.code }) end
    local items = {}
    for i = 1, p.n do items[i] = i end
    sluice.map(items, function()
      return assert(sluice.http.get(p.url .. "/delay/" .. p.delay, { limit_key = "api" })).status
    end, { concurrency = p.n })
    local l = sluice.http.limit("api")
    return { version = %d, concurrency = l and l.concurrency, source = l and l.source.concurrency }
  end,
}
"""


class ConfigReload(harness.HttpFixtureTest):

    def setUp(self):
        super().setUp()
        self.fx.reset()
        self.dir = tempfile.mkdtemp(prefix="sluice-reload-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.conf = os.path.join(self.dir, "sluice.conf")
        self.handlers = os.path.join(self.dir, "handlers")
        os.mkdir(self.handlers)
        self.write(os.path.join(self.handlers, "burst.lua"), BURST_HANDLER % 1)

    def write(self, path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def renv(self, extra=None):
        env = self.env({"SLUICE_HANDLERS": self.handlers, "SLUICE_CONFIG": self.conf})
        env.update(extra or {})
        return env

    def cli_env(self):
        """For the commands the test runs: not the daemon's config file, which
        may be broken on purpose."""
        return self.env({"SLUICE_HANDLERS": self.handlers})

    def burst(self, **params):
        """Queues a burst run, waits for it; returns its result and the most
        requests the fixture saw in flight at once."""
        self.fx.reset()
        params = {"url": self.fx.url, **params}
        job = self.sluice("queue", "burst", "--params", json.dumps(params),
                          env=self.cli_env()).stdout.strip()
        self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                      in ("completed", "failed"), 60, f"job {job} did not finish")
        run = self.one(f"SELECT status, result, error_message FROM sluice.scheduled_job_runs "
                       f"WHERE scheduled_job_id = '{job}'")
        self.assertEqual(run["status"], "completed", run)
        return run["result"], self.fx.stats()["max_in_flight"]

    def reload(self, d, expect):
        """SIGHUP, then waits for its `expect` line (counted: each reload
        logs its own)."""
        before = d.log().count(expect)
        d.signal(signal.SIGHUP)
        self.wait_for(lambda: d.log().count(expect) > before, 20, f"the reload never logged {expect!r}")
        d.wait_log("handlers reloaded")

    def lines(self, d, text):
        return [x for x in d.log().splitlines() if text in x]

    # -------------------------------------------------------------- http_limit

    def test_a_changed_http_limit_line_applies_at_sighup(self):
        self.write(self.conf, "http_limit = api concurrency=3\n")
        env = self.renv()
        with self.serve("--no-watch", env=env) as d:
            d.wait_log("sluice serving")
            # the code's setting (5) is looser: the config's 3 is in force
            result, seen = self.burst(code=5)
            self.assertEqual((result["concurrency"], result["source"], seen), (3, "config", 3))

            self.write(self.conf, "# lowered to protect the paid API\nhttp_limit = api concurrency=2\n")
            self.reload(d, "config file reloaded")
            self.assertIn('changed=http_limit', self.lines(d, "config file reloaded")[-1])
            changed = self.lines(d, "http limit changed by the config file")
            self.assertEqual(len(changed), 1, d.log())
            self.assertIn('limit=api config="concurrency=2" in_force="concurrency=2"', changed[0])
            result, seen = self.burst()
            self.assertEqual((result["concurrency"], result["source"], seen), (2, "config", 2))

            # the line removed: the limit the code set is in force again, not
            # the deleted line's, and not none
            self.write(self.conf, "# no limit for the API here any more\n")
            self.reload(d, "config file reloaded")
            self.assertIn('limit=api config=none in_force="concurrency=5"',
                          self.lines(d, "http limit changed by the config file")[-1])
            result, seen = self.burst()
            self.assertEqual((result["concurrency"], result["source"], seen), (5, "code", 5))

            # a SIGHUP with nothing changed changes nothing
            self.reload(d, "config file reloaded")
            self.assertIn("changed=nothing", self.lines(d, "config file reloaded")[-1])
        self.assertNotIn("Sanitizer", d.log())

    def test_a_broken_config_file_changes_nothing_and_handlers_still_reload(self):
        env = self.renv()
        del env["DATABASE_URL"]  # the file's db line is the one in force
        db = f"db = {self.db}\n"
        self.write(self.conf, db + "http_limit = api concurrency=2\n")
        with self.serve("--no-watch", env=env) as d:
            d.wait_log("sluice serving")
            result, seen = self.burst()
            self.assertEqual((result["version"], result["concurrency"], seen), (1, 2, 2))

            # line 2 alone would raise the limit; line 3 is wrong: neither applies
            self.write(self.conf, db + "http_limit = api concurrency=6\nconcurrency = lots\n")
            self.write(os.path.join(self.handlers, "burst.lua"), BURST_HANDLER % 2)
            self.reload(d, "config file rejected")
            rejected = self.lines(d, "config file rejected")[-1]
            self.assertIn("level=error", rejected)
            self.assertIn(f"{self.conf}:3: bad value for concurrency: 'lots'", rejected)
            self.assertNotIn("config file reloaded", d.log())
            self.assertNotIn("http limit changed", d.log())
            result, seen = self.burst(n=6)
            # the handler was reloaded; the limit is the one in force before
            self.assertEqual((result["version"], result["concurrency"], seen), (2, 2, 2))

            # a database URL libpq refuses: a restart would not start, so it is
            # refused now, and the file's other changes with it
            self.write(self.conf, "http_limit = api concurrency=6\n"
                                  "db = postgresql://localhost/x?sslmode=bogus\n")
            self.reload(d, "config file rejected")
            rejected = self.lines(d, "config file rejected")[-1]
            self.assertIn("the database URL is not valid", rejected)
            self.assertIn(f"the db setting at {self.conf}:2", rejected)

            # a file that cannot be read (named by SLUICE_CONFIG, so required)
            os.rename(self.conf, self.conf + ".away")
            self.reload(d, "config file rejected")
            self.assertIn(f"cannot read config file {self.conf}", self.lines(d, "config file rejected")[-1])
            os.rename(self.conf + ".away", self.conf)

            result, seen = self.burst()
            self.assertEqual((result["concurrency"], seen), (2, 2))
            self.assertNotIn("config file reloaded", d.log())

            # fixed: it applies
            self.write(self.conf, db + "http_limit = api concurrency=4\n")
            self.reload(d, "config file reloaded")
            result, seen = self.burst()
            self.assertEqual((result["concurrency"], seen), (4, 4))
        self.assertNotIn("Sanitizer", d.log())

    # -------------------------------------------------------------- concurrency

    def burst_runs(self, n):
        """Queues n burst jobs of one 2 s request each, in one statement (one
        claim can take them all), and waits for them; returns the most
        requests the fixture saw in flight at once: the runs at once."""
        self.fx.reset()
        params = json.dumps({"url": self.fx.url, "n": 1, "delay": 2000})
        self.scalar(f"SELECT count(sluice.queue_one_time_job(NULL, 'burst', '{params}')) "
                    f"FROM generate_series(1, {n})")
        self.wait_for(lambda: self.scalar("SELECT count(*) FROM sluice.scheduled_jobs "
                                          "WHERE status <> 'completed'") == "0", 60, "the runs did not finish")
        return self.fx.stats()["max_in_flight"]

    def test_concurrency_and_log_level_change_live(self):
        self.write(self.conf, "concurrency = 2\nlog_level = info\n")
        env = self.renv()
        del env["SLUICE_LOG_LEVEL"]  # the file's is the one in force
        with self.serve("--no-watch", env=env) as d:
            wid = d.worker_id()
            self.assertEqual(self.burst_runs(4), 2)
            self.assertNotIn("level=debug", d.log())
            self.write(self.conf, "concurrency = 4\nlog_level = debug\n")
            self.reload(d, "config file reloaded")
            self.assertIn('changed="concurrency, log_level"', self.lines(d, "config file reloaded")[-1])
            self.assertEqual(self.burst_runs(6), 4)
            self.assertIn("level=debug", d.log())  # completed runs are logged at debug
            self.wait_for(lambda: self.scalar(f"SELECT concurrency FROM sluice.workers WHERE id = '{wid}'") == "4",
                          10, "sluice.workers does not show the new concurrency")
        self.assertNotIn("Sanitizer", d.log())

    # -------------------------------------------------------------- the Lua state's caps

    def hog(self, **params):
        """Queues a hog run, waits for it → (status, error)."""
        job = self.sluice("queue", "hog", "--params", json.dumps(params), env=self.cli_env()).stdout.strip()
        self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                      in ("completed", "failed"), 60, f"job {job} did not finish")
        run = self.one(f"SELECT status, error_message FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
        return run["status"], run["error_message"] or ""

    def test_the_memory_cap_and_the_instruction_budget_change_live(self):
        # hog holds a string of `mb` MB, then counts to `loops` without yielding
        self.write(os.path.join(self.handlers, "hog.lua"), """return {
            params = { mb = { type = "integer", default = 0 }, loops = { type = "integer", default = 0 } },
            max_retries = 0,
            run = function(job)
              local s = string.rep("x", job.params.mb * 1048576)
              local n = 0
              for _ = 1, job.params.loops do n = n + 1 end
              return { bytes = #s, n = n }
            end }""")
        self.write(self.conf, "memory_limit_mb = 512\ninstruction_budget = 100000000\nlog_level = info\n")
        with self.serve("--no-watch", env=self.renv()) as d:
            self.assertEqual(self.hog(mb=64), ("completed", ""))
            self.assertEqual(self.hog(loops=1000000), ("completed", ""))
            self.write(self.conf, "memory_limit_mb = 48\ninstruction_budget = 200000\nlog_level = info\n")
            self.reload(d, "config file reloaded")
            self.assertIn('changed="memory_limit_mb, instruction_budget"', self.lines(d, "config file reloaded")[-1])
            self.assertEqual(self.lines(d, "takes a restart"), [])
            status, error = self.hog(mb=64)
            self.assertEqual(status, "failed")
            self.assertIn("memory limit exceeded", error)
            status, error = self.hog(loops=1000000)
            self.assertEqual(status, "failed")
            self.assertIn("instruction budget exceeded", error)
            self.assertEqual(self.hog(mb=1, loops=1000), ("completed", ""))  # within both
        self.assertNotIn("Sanitizer", d.log())

    # -------------------------------------------------------------- restart-only

    def test_a_setting_that_takes_a_restart_is_warned_about_and_kept(self):
        env = self.renv()
        del env["DATABASE_URL"]  # the file's db line is the one in force
        self.write(self.conf, f"db = {self.db}\nlease_seconds = 60\nlog_level = info\n"
                              "concurrency = 4\n")
        with self.serve("--no-watch", "--concurrency", "3", env=env) as d:
            d.wait_log("sluice serving")
            self.assertIn("concurrency=3", self.lines(d, "sluice serving")[0])
            other = "postgresql:///elsewhere?host=/nonexistent"
            # the environment's log level and the flag's concurrency win over
            # the file's, as at start
            self.write(self.conf, f"db = {other}\nlease_seconds = 600\nlog_level = warn\n"
                                  "concurrency = 7\n")
            self.reload(d, "config file reloaded")
            warned = self.lines(d, "takes a restart")
            self.assertEqual(len(warned), 2, d.log())
            self.assertIn("level=warn", warned[0])
            self.assertIn("setting=db", warned[0])
            self.assertIn(f'configured="{other}"', warned[0])
            self.assertIn("setting=lease_seconds in_force=60 configured=600", warned[1])
            # at info still (SLUICE_LOG_LEVEL), nothing live changed
            self.assertIn("changed=nothing", self.lines(d, "config file reloaded")[-1])
            # the lease in force is still 60 s: a run claimed now holds one of
            # 60 s, not 600 (and the database is still the one it had)
            job = self.sluice("queue", "burst", "--params",
                              json.dumps({"url": self.fx.url, "n": 1, "delay": 3000}),
                              env=self.cli_env()).stdout.strip()
            lease = self.wait_for(lambda: self.scalar(
                f"SELECT round(extract(epoch FROM lease_expires_at - started_at)) FROM sluice.scheduled_job_runs "
                f"WHERE scheduled_job_id = '{job}' AND status = 'running'"), 30, "the run never started")
            self.assertLess(float(lease), 100)  # 60 s, renewed perhaps once since
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                          == "completed", 30, "the run did not complete")
            self.assertEqual(self.scalar("SELECT concurrency FROM sluice.workers ORDER BY started_at DESC LIMIT 1"),
                             "3")
        self.assertNotIn("Sanitizer", d.log())


if __name__ == "__main__":
    harness.main()
