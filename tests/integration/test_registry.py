#!/usr/bin/env python3
"""The job-type registry, parameter validation, dataset freshness and the Pipeline
Manager in the terminal: `sluice check`, `types`, `health`, `runs`, `jobs`, `show`,
`queue --if-stale`, the SQL enqueue's rejections and the freshness bookkeeping of
finish_runs, through the real binary and a real Postgres.

Handlers used: tests/integration/handlers/fresh_probe.lua (two datasets, a mode
parameter that drives each freshness outcome) and review_probe.lua (brand
required, one parameter of each kind). Broken handlers for `check` are written
to a temporary directory by the tests themselves."""

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unicodedata
import uuid

import harness

URL_A = "0b6f8e52-3a59-4a44-9d8e-1f2f3a4b5c6d"
URL_B = "7c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5"

BROKEN = {
    # file name → (source, [expected problem substrings])
    "syntax_error.lua": ("return { label = 'x', run = function(job) return end\n",
                         ["line 2: '}' expected"]),
    "unknown_field.lua": ("return { lable = 'Typo', run = function(job) end }\n",
                          ["unknown field 'lable' — did you mean 'label'?"]),
    "missing_run.lua": ("return { label = 'No run' }\n",
                        ["run: missing"]),
    "bad_schema.lua": ("return { params = { n = { type = 'integr' }, s = { type = 'string', "
                       "min_lenght = 3 } }, run = function(job) end }\n",
                       ["params: field 'n': unknown type 'integr' — did you mean 'integer'?",
                        "params: field 's': unknown key 'min_lenght' — did you mean 'min_length'?"]),
    "bad_default.lua": ("return { params = { n = { type = 'integer', min = 1, max = 10, default = 50 } }, "
                        "run = function(job) end }\n",
                        ["params: field 'n': default: must be at most 10, got 50"]),
    "undeclared.lua": ("-- job.dataset('in_comment') is not a call\n"
                       "return {\n"
                       "  datasets = { reviews = { label = 'Reviews', max_age = '1 day' } },\n"
                       "  run = function(job)\n"
                       "    job.dataset('reviews'):success(1)\n"
                       "    job.dataset(\"reveiws\"):success(1)\n"
                       "    job.dataset 'other_data':fail('x')\n"
                       "    job.log(\"job.dataset('in_string')\")\n"
                       "  end,\n"
                       "}\n",
                       ["datasets: job.dataset(\"reveiws\") on line 6 uses a dataset the handler "
                        "does not declare — did you mean 'reviews'? (found by a static scan of the source)",
                        "datasets: job.dataset(\"other_data\") on line 7"]),
    # beyond what a worker can schedule: a huge max_age overflowed Postgres' intervals
    # and broke every health view; a huge max_retries overflowed the backoff
    "out_of_range.lua": ("return { datasets = { d = { label = 'D', max_age = 1e13 } }, max_retries = 5000, "
                         "timeout = '11000 days', run = function(job) end }\n",
                         ["datasets.d.max_age: must be at most 3650 days (10 years)",
                          "max_retries: must be a whole number from 0 to 1000",
                          "timeout: \"11000 days\" is more than 3650 days (10 years)"]),
    # a string without a unit ("90": seconds) was taken at any size, and zero
    # was "cannot read" though it reads well enough
    "unitless.lua": ("return { datasets = { d = { label = 'D', max_age = '10000000000000' } }, "
                     "retry_base = '0', run = function(job) end }\n",
                     ["datasets.d.max_age: \"10000000000000\" is more than 3650 days (10 years)",
                      "retry_base: must be a positive duration, not \"0\""]),
    # the delay is capped at retry_max: a larger retry_base was cut to it in silence
    "retry_inverted.lua": ("return { retry_base = '2 hours', retry_max = '30 min', run = function(job) end }\n",
                           ["retry_base: \"2 hours\" (7200 s) is more than retry_max \"30 min\" (1800 s) — "
                            "the delay between retries is at most retry_max: raise retry_max or lower retry_base"]),
    "retry_over_default.lua": ("return { retry_base = 7200, run = function(job) end }\n",
                               ["retry_base: 7200 s is more than retry_max (3600 s, the default)"]),
    "run_not_a_function.lua": ("return { run = 'main' }\n", ["run: must be a function(job) … end, not a string"]),
    "bad_dataset.lua": ("return { datasets = { d = { label = 'D', max_age = '7 parsecs', colour = 1 } }, "
                        "run = function(job) end }\n",
                        ["datasets.d.max_age: unknown unit \"parsecs\"",
                         "datasets.d: unknown field 'colour'"]),
    "not_a_table.lua": ("return 42\n", ["the file must return the handler table, not a number"]),
    "Bad-Name.lua": ("return { run = function(job) end }\n",
                     ["the file name must be the job type"]),
    # the rule's every part is said: a name of lower-case letters and digits
    # that starts with a digit was told only "lower-case letters, digits and _"
    "2fast.lua": ("return { run = function(job) end }\n",
                  ["the file name must be the job type: lower-case letters, digits and _, "
                   "starting with a letter, at most 63 characters"]),
}


def display_width(text):
    """Terminal columns of text, as sluice measures them (wide emoji count two)."""
    w = 0
    prev_wide = True
    for ch in text:
        if ch == "\ufe0f":
            if not prev_wide:
                w += 1
            prev_wide = True
            continue
        if unicodedata.combining(ch) or ch == "\u200d":
            continue
        prev_wide = unicodedata.east_asian_width(ch) in "WF"
        w += 2 if prev_wide else 1
    return w


def psql(db, sql):
    """Runs sql with psql; returns (exit status, stdout, stderr)."""
    proc = subprocess.run(["psql", db, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, env=harness.pgfixture.clean_env())
    return proc.returncode, proc.stdout.strip(), proc.stderr


class Registry(harness.SluiceTest):

    # -------------------------------------------------------------- helpers

    def brand(self, name):
        return self.sluice("brands", "add", name).stdout.strip()

    def sync(self):
        """Any view syncs the handlers into the registry."""
        self.sluice("jobs")

    def run_fg(self, *args, check=True):
        return self.sluice("run", *args, check=check)

    def view_json(self, *args, env=None):
        proc = self.sluice(*args, "--json", env=env)
        return json.loads(proc.stdout)

    def status_row(self, dataset, brand_id=None):
        scope = "brand_id IS NULL" if brand_id is None else f"brand_id = '{brand_id}'"
        rows = self.sql(f"SELECT * FROM sluice.dataset_status WHERE dataset_key = '{dataset}' AND {scope}")
        self.assertLessEqual(len(rows), 1)
        return rows[0] if rows else None

    def health_states(self, *args):
        rows = self.view_json("health", *args)
        return {(r["brand_name"], r["dataset_key"]): r["state"] for r in rows}

    def assert_one_line_error(self, proc, text):
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertIn(text, lines[0])
        self.assertEqual(proc.stdout, "")

    def no_db_env(self):
        """A database URL that cannot work: commands that touch it fail."""
        return self.env({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"})

    # -------------------------------------------------------------- sluice check

    def test_check_passes_good_handlers_without_a_database(self):
        proc = self.sluice("check", env=self.no_db_env(), check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        n = len([f for d in self.handlers for f in os.listdir(d) if f.endswith(".lua")])
        self.assertEqual(proc.stdout, f"{n} handlers OK\n")
        one = self.sluice("check", os.path.join(harness.EXAMPLES, "echo.lua"), env=self.no_db_env())
        self.assertEqual(one.stdout, "1 handler OK\n")

    def test_check_reports_every_problem_with_file_and_field(self):
        with tempfile.TemporaryDirectory() as d:
            for name, (src, _) in BROKEN.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(src)
            with open(os.path.join(d, "fine.lua"), "w") as f:
                # a retry_base equal to retry_max (a constant delay) is fine
                f.write("return { datasets = { x = { label = 'X' } }, retry_base = '1 hour', "
                        "run = function(job) job.dataset('x'):success(1) end }\n")
            proc = self.sluice("check", d, env=self.no_db_env(), check=False)
            self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
            lines = proc.stdout.splitlines()
            expected = 0
            for name, (_, problems) in BROKEN.items():
                path = os.path.join(d, name)
                mine = [line for line in lines if line.startswith(path + ": ")]
                for p in problems:
                    self.assertTrue(any(p in line for line in mine), f"{name}: no {p!r} in {mine}")
                expected += len(problems)
            self.assertEqual(len(lines), expected, proc.stdout)  # nothing else, nothing twice
            self.assertNotIn("in_comment", proc.stdout)
            self.assertNotIn("in_string", proc.stdout)
            self.assertIn(f"{expected} problems found; 1 handler OK", proc.stderr)

            js = self.sluice("check", d, "--json", env=self.no_db_env(), check=False)
            self.assertEqual(js.returncode, 1)
            out = json.loads(js.stdout)
            self.assertEqual(set(out), {"ok", "handlers", "problems"})
            self.assertIs(out["ok"], False)
            self.assertEqual(out["handlers"], ["fine"])
            self.assertEqual(len(out["problems"]), expected)
            self.assertEqual(set(out["problems"][0]), {"file", "message"})
            self.assertIn({"file": os.path.join(d, "missing_run.lua"),
                           "message": "run: missing — the handler must define run = function(job) … end"},
                          out["problems"])

            # one file at a time, and paths that are not handlers
            single = self.sluice("check", os.path.join(d, "bad_default.lua"), check=False)
            self.assertEqual(single.returncode, 1)
            self.assertEqual(len(single.stdout.splitlines()), 1)
            missing = self.sluice("check", os.path.join(d, "nope.lua"), os.path.join(d, "fine.lua"),
                                  check=False)
            self.assertEqual(missing.returncode, 1)
            self.assertEqual(missing.stdout, os.path.join(d, "nope.lua") + ": no such file or directory\n")

    def test_undeclared_dataset_keeps_the_handler_out(self):
        # the same scan runs wherever handlers load: the type is not loaded
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "undeclared.lua"), "w") as f:
                f.write(BROKEN["undeclared.lua"][0])
            with open(os.path.join(d, "fine.lua"), "w") as f:
                f.write("return { run = function(job) end }\n")
            proc = self.sluice("types", "--json", env=self.env({"SLUICE_HANDLERS": d}))
            self.assertEqual([t["name"] for t in json.loads(proc.stdout)], ["fine"])
            self.assertIn("2 problems in handler files kept some types out", proc.stderr)

    def test_an_inverted_retry_policy_keeps_the_handler_out(self):
        # wherever handlers load, not only in check: the type is not loaded or registered
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "retry_inverted.lua"), "w") as f:
                f.write(BROKEN["retry_inverted.lua"][0])
            with open(os.path.join(d, "fine.lua"), "w") as f:
                f.write("return { retry_base = '30 min', retry_max = '30 min', run = function(job) end }\n")
            proc = self.sluice("types", "--json", env=self.env({"SLUICE_HANDLERS": d}))
            self.assertEqual([t["name"] for t in json.loads(proc.stdout)], ["fine"])
            self.assertIn("1 problem in handler files kept some types out", proc.stderr)
            self.sluice("jobs", env=self.env({"SLUICE_HANDLERS": d}))  # syncs the registry
            self.assertEqual(self.count("sluice.job_types", "name in ('fine', 'retry_inverted')"), 1)

    # -------------------------------------------------------------- sluice types

    def test_types_table_and_json_without_a_database(self):
        env = self.no_db_env()
        types = self.view_json("types", env=env)
        names = [t["name"] for t in types]
        self.assertEqual(names, sorted(names))
        probe = next(t for t in types if t["name"] == "fresh_probe")
        # every key --help lists, a missing description as null
        self.assertEqual(set(probe), {"name", "label", "emoji", "description", "brand_rule",
                                      "param_schema", "default_params", "timeout_seconds",
                                      "max_retries", "retry_base_seconds", "retry_max_seconds",
                                      "file", "version", "datasets"})
        self.assertIsNone(probe["description"])
        self.assertEqual(next(t for t in types if t["name"] == "noop")["description"],
                         "Succeeds at once; records the time it started when given t")
        self.assertEqual(probe["emoji"], "🧪")
        self.assertEqual(probe["label"], "Freshness probe")
        self.assertEqual(probe["default_params"], {"mode": "records", "records": 7, "sleep": 0})
        self.assertEqual(probe["datasets"], {"alpha_data": {"label": "Alpha Data", "max_age_seconds": 3600},
                                             "beta_data": {"label": "Beta Data", "max_age_seconds": 86400}})
        review = next(t for t in types if t["name"] == "review_probe")
        self.assertEqual(review["brand_rule"], "required")
        self.assertIs(review["param_schema"]["competitor_amazon_url_id"]["required"], True)

        table = self.sluice("types", env=self.env({"COLUMNS": "250", "DATABASE_URL": env["DATABASE_URL"]}))
        line = next(l for l in table.stdout.splitlines() if "fresh_probe" in l)
        self.assertTrue(line.startswith("🧪 fresh_probe"), line)
        for text in ("Freshness probe", "optional", "mode=records, records=7, sleep=0",
                     "Alpha Data [alpha_data, 1h], Beta Data [beta_data, 1d]"):
            self.assertIn(text, line)
        header = table.stdout.splitlines()[0]
        self.assertEqual(header.split(), ["TYPE", "LABEL", "BRAND", "DEFAULT", "PARAMS", "DATASETS",
                                          "(MAX", "AGE)", "TIMEOUT", "RETRIES"])
        # the columns line up: every row puts LABEL at the same display column
        col = display_width(header[:header.index("LABEL")])
        for row in table.stdout.splitlines()[1:]:
            name = row.split("  ")[0]
            rest = row[len(name):]
            self.assertEqual(display_width(name) + len(rest) - len(rest.lstrip(" ")), col, row)

        one = self.sluice("types", "review_probe", env=self.env({"COLUMNS": "250"}))
        self.assertIn("parameters", one.stdout)
        self.assertRegex(one.stdout, r"competitor_amazon_url_id\s+uuid\s+yes")
        self.assertRegex(one.stdout, r"max_reviews\s+integer\s+500\s+>= 1, <= 5000")
        self.assertRegex(one.stdout, r"sort\s+string\s+recent\s+one of recent\|helpful")
        bad = self.sluice("types", "review_prob", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("did you mean 'review_probe'", bad.stderr)

    def test_types_of_a_broken_file_or_an_unreadable_directory(self):
        d = tempfile.mkdtemp(prefix="sluice-types-")
        try:
            with open(os.path.join(d, "broken.lua"), "w") as f:
                f.write(BROKEN["syntax_error.lua"][0])
            env = self.no_db_env()
            env["SLUICE_HANDLERS"] = d
            for args in (("types", "broken"), ("types", "broken", "--json")):
                proc = self.sluice(*args, env=env, check=False)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertEqual(proc.stdout, "")
                self.assertIn("types: job type 'broken' is not available: its handler file failed to load "
                              "(see `sluice check`)", proc.stderr)
                self.assertIn(f"{d}/broken.lua: line 2:", proc.stderr)
                self.assertNotIn("no handler files were found", proc.stderr)
            listing = self.sluice("types", env=env)
            self.assertIn("no job types: no handler file loaded", listing.stderr)
            # queueing it says why its parameters are not checked here
            queued = self.sluice("queue", "broken", env={**self.env(), "SLUICE_HANDLERS": d}, check=False)
            self.assertIn("broken: its handler file failed to load here (see `sluice check`)", queued.stderr)
            env["SLUICE_HANDLERS"] = "/nonexistent/handlers"
            for args in (("types",), ("types", "--json")):
                proc = self.sluice(*args, env=env, check=False)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertEqual(proc.stdout, "")
                self.assertIn("no job types: a handler directory cannot be read:\n  /nonexistent/handlers: "
                              "cannot open the handler directory: No such file or directory", proc.stderr)
        finally:
            shutil.rmtree(d)

    def test_a_broken_file_is_not_run_here(self):
        # sluice run and the REPL's run() validated such a job against the
        # registry, created its run and then could not start it: `sluice run`
        # left the run running until its lease ran out, the REPL failed it as
        # "unknown job type"
        d = tempfile.mkdtemp(prefix="sluice-broken-run-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "fragile.lua")
        with open(path, "w") as f:
            f.write("return { run = function(job) return { ok = true } end }\n")
        env = self.env({"SLUICE_HANDLERS": d})
        self.sluice("run", "fragile", env=env)  # registered, and it runs
        with open(path, "w") as f:
            f.write(BROKEN["syntax_error.lua"][0])
        before = self.count("sluice.scheduled_job_runs", "job_type = 'fragile'")
        why = ("fragile: its handler file failed to load here (the problem is above; see `sluice "
               "check`), so it cannot run here")
        proc = self.sluice("run", "fragile", env=env, check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn(f"sluice: error: {why}", proc.stderr)
        self.assertIn(f"{d}/fragile.lua: line 2:", proc.stderr)
        proc = self.sluice("repl", "-e", 'run("fragile", {})', env=env, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn(f"run: {why}", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_job_runs", "job_type = 'fragile'"), before)
        # queueing it is still for a worker to run, as before
        queued = self.sluice("queue", "fragile", env=env)
        self.assertIn("fragile: its handler file failed to load here (see `sluice check`)", queued.stderr)

    def test_start_up_syncs_the_registry_only_when_it_changed(self):
        hdir = tempfile.mkdtemp(prefix="sluice-registry-")
        self.addCleanup(shutil.rmtree, hdir, True)
        path = os.path.join(hdir, "sync_probe.lua")

        def write(label):
            with open(path, "w", encoding="utf-8") as f:
                f.write("return { label = %s, datasets = { probe_data = { label = 'Probe', "
                        "max_age = '1h' } }, run = function(job) end }\n" % json.dumps(label))

        env = self.env({"SLUICE_HANDLERS": hdir})

        def start_up():  # a daemon's: it syncs in full
            with self.serve("--no-watch", env=env) as d:
                d.wait_log("sluice serving")
                self.assertEqual(d.stop(), 0, d.log())

        def state():
            return self.sql("SELECT types_md5, synced_at FROM sluice.registry_state")

        def label():
            return self.scalar("SELECT label || '/' || updated_at FROM sluice.job_types "
                               "WHERE name = 'sync_probe'")

        write("First")
        start_up()
        first = state()
        self.assertEqual(len(first), 1)
        stamp = label()
        self.assertTrue(stamp.startswith("First/"), stamp)
        # the same handlers again: the sync does nothing
        start_up()
        self.assertEqual(state(), first)
        self.assertEqual(label(), stamp)
        # a changed file is synced at the next start-up
        write("Second")
        start_up()
        self.assertNotEqual(state()[0]["types_md5"], first[0]["types_md5"])
        self.assertTrue(label().startswith("Second/"), label())
        # anything else changing the registry tables clears the state, so the next
        # start-up puts back what the handlers declare
        for edit in ("UPDATE sluice.job_types SET label = 'edited' WHERE name = 'sync_probe'",
                     "UPDATE sluice.datasets SET label = 'edited' WHERE dataset_key = 'probe_data'",
                     "DELETE FROM sluice.job_type_datasets WHERE job_type = 'sync_probe'"):
            self.scalar(edit)
            self.assertEqual(state(), [], edit)
            start_up()
            self.assertEqual(len(state()), 1, edit)
            self.assertTrue(label().startswith("Second/"), label())
            self.assertEqual(self.scalar("SELECT label FROM sluice.datasets "
                                         "WHERE dataset_key = 'probe_data'"), "Probe")
            self.assertEqual(self.count("sluice.job_type_datasets", "job_type = 'sync_probe'"), 1)
        # a partial sync (the views and the commands run by hand sync what they
        # find) that changes nothing keeps it; one that changes a row clears it
        self.sluice("jobs", env=env)
        self.sluice("queue", "sync_probe", "--at", "2099-01-01T00:00:00Z", env=env)
        self.assertEqual(len(state()), 1)
        write("Third")
        self.sluice("jobs", env=env)
        self.assertEqual(state(), [])
        self.assertTrue(label().startswith("Third/"), label())

    def probe_dirs(self, *names):
        """A handler directory per name, holding only <name>.lua; their envs."""
        envs = []
        for name in names:
            d = tempfile.mkdtemp(prefix=f"sluice-{name}-")
            self.addCleanup(shutil.rmtree, d, True)
            with open(os.path.join(d, f"{name}.lua"), "w") as f:
                f.write("return { run = function(job) return { ok = true } end }\n")
            envs.append(self.env({"SLUICE_HANDLERS": d}))
        return envs

    def probes_available(self):
        return {r["name"]: r["available"] for r in self.sql(
            "SELECT name, available FROM sluice.job_types WHERE name LIKE '%_probe'")}

    def test_a_command_run_by_hand_retires_no_type(self):
        # `sluice run` (and queue, schedule, the REPL) synced the registry in
        # full: started with a directory of its own against the shared
        # database, it marked every type the daemons serve unavailable, and
        # every client's enqueue of them failed until a daemon reloaded
        daemon_env, own = self.probe_dirs("served_probe", "scratch_probe")
        with self.serve("--no-watch", env=daemon_env) as d:
            d.wait_log("sluice serving")
            self.assertEqual(self.probes_available(), {"served_probe": True})
            self.sluice("run", "scratch_probe", env=own)
            self.sluice("queue", "scratch_probe", "--at", "2099-01-01T00:00:00Z", env=own)
            self.sluice("schedule", "scratch_probe", "--cron", "0 3 * * *", env=own)
            self.sluice("repl", "-e", 'print(reload())', env=own)
            self.assertEqual(self.probes_available(), {"served_probe": True, "scratch_probe": True})
            job = self.scalar("SELECT sluice.queue_one_time_job(NULL, 'served_probe', '{}')")
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                          == "completed", 30, "the daemon did not run the job queued through SQL")
            self.assertEqual(d.stop(), 0, d.log())
        # a daemon's start-up retires the types it has no file for
        with self.serve("--no-watch", env=own) as d:
            d.wait_log("sluice serving")
            self.assertEqual(self.probes_available(), {"served_probe": False, "scratch_probe": True})
            self.assertEqual(d.stop(), 0, d.log())
        # and SQL clients are told why, not that the type is unknown
        self.assertIn("ERROR:  22023: job type 'served_probe' is unavailable: the last daemon to sync the "
                      "registry has no handler file for it",
                      self.sql_error("SELECT sluice.queue_one_time_job(NULL, 'served_probe', '{}')"))

    def test_a_daemon_retires_no_type_another_live_daemon_serves(self):
        # a daemon's sync marked every type it had no file for unavailable,
        # whatever the other daemons served: two daemons given different
        # handler directories took each other's types away at every start
        first_env, second_env = self.probe_dirs("first_probe", "second_probe")
        first = self.serve("--no-watch", "--lease", "3", env=first_env)
        first.wait_log("sluice serving")
        # a rescue pass every second: what the registry says is settled as often
        with self.serve("--no-watch", "--lease", "3", "--log-level", "debug", env=second_env) as second:
            second.wait_log("sluice serving")
            both = {"first_probe": True, "second_probe": True}
            self.assertEqual(self.probes_available(), both)
            # `sluice workers` shows both live, with what each serves
            table = self.sluice("workers").stdout
            self.assertRegex(table, r"(?m)^[0-9a-f]{8}  serve .* live .* first_probe\s*$")
            self.assertRegex(table, r"(?m)^[0-9a-f]{8}  serve .* live .* second_probe\s*$")
            self.assertTrue(table.endswith("\n2 workers: 2 live, 0 stopped, 0 silent\n"), table)
            n = second.log().count("registry synced after a reload")
            second.signal(signal.SIGHUP)
            self.wait_for(lambda: second.log().count("registry synced after a reload") > n, 10,
                          "the reload's registry sync was not answered")
            self.assertEqual(self.probes_available(), both)
            # a type a live daemon serves, taken for gone, is put back by it
            self.scalar("UPDATE sluice.job_types SET available = false WHERE name = 'first_probe'")
            first.wait_log("job type available again: this worker serves it", timeout=10)
            self.assertEqual(self.probes_available(), both)
            # one killed counts as live for two of its leases (its heartbeat
            # renewed every third of one), then the other's rescue pass retires
            # its types
            killed_at = time.time()
            first.kill()
            self.wait_for(lambda: not self.probes_available()["first_probe"], 20,
                          "the killed daemon's type was not marked unavailable")
            self.assertGreaterEqual(time.time() - killed_at, 2 * 3 - 1.5)
            self.assertIn('msg="job type marked unavailable: no live worker serves it any longer" '
                          'type=first_probe', second.log())
            self.assertTrue(self.probes_available()["second_probe"])
            self.assertEqual(second.stop(), 0, second.log())
        # what a daemon serves is in sluice.workers; the one killed is silent,
        # the one stopped says so
        workers = json.loads(self.sluice("workers", "--json").stdout)
        self.assertEqual([(w["kind"], w["state"], w["types"], w["lease_seconds"], w["running"])
                          for w in sorted(workers, key=lambda w: w["started_at"])],
                         [("serve", "silent", ["first_probe"], 3, 0), ("serve", "stopped", ["second_probe"], 3, 0)])
        proc = self.sluice("workers", "--bogus", check=False)
        self.assertEqual((proc.returncode, proc.stdout), (2, ""))
        self.assertEqual(proc.stderr, "sluice: error: workers: unknown option '--bogus' "
                                      "(see `sluice workers --help`)\n")

    def test_workers_lists_the_live_first_and_hides_the_long_gone(self):
        empty = self.sluice("workers")
        self.assertEqual((empty.stdout, empty.stderr), ("", "no workers seen within the past hour "
                                                            "(`sluice workers --all` lists every one)\n"))
        self.assertEqual(self.sluice("workers", "--all").stderr, "no workers yet: start one with `sluice serve`\n")
        self.assertEqual(self.sluice("workers", "--json").stdout, "[]\n")
        never = self.sluice("workers", "--check", "--json", check=False)
        self.assertEqual((never.returncode, never.stdout), (1, "[]\n"))
        self.assertEqual(never.stderr, "unhealthy: no daemon is live: none was ever started on this database "
                                       "(`sluice serve`)\n")
        self.sluice("run", "echo")  # a foreground run: registered, then stopped
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 60}').stdout.strip()
        with self.serve() as d:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            rows = json.loads(self.sluice("workers", "--json").stdout)
            self.assertEqual([(w["kind"], w["state"], w["running"]) for w in rows],
                             [("serve", "live", 1), ("run", "stopped", 0)])
            self.assertIn("sleep", rows[0]["types"])
            table = self.sluice("workers").stdout.splitlines()
            self.assertRegex(table[1], r"^[0-9a-f]{8}  serve .* live .* 10 +1  ")
            self.assertRegex(table[2], r"^[0-9a-f]{8}  run +.* stopped just now ")
            live = self.sluice("workers", "--check", check=False)
            self.assertEqual((live.returncode, live.stderr), (0, ""), live.stdout)
            self.sluice("jobs", "cancel", job)
            self.assertEqual(d.stop(), 0, d.log())
        gone = self.sluice("workers", "--check", check=False)
        self.assertEqual((gone.returncode, gone.stderr), (1, "unhealthy: no daemon is live: the last one was seen "
                                                            "just now\n"))
        # a worker last seen more than an hour ago is left out unless --all
        self.scalar("UPDATE sluice.workers SET started_at = started_at - interval '2 hours', "
                    "stopped_at = now() - interval '2 hours' WHERE kind = 'run'")
        self.assertEqual([w["kind"] for w in json.loads(self.sluice("workers", "--json").stdout)], ["serve"])
        self.assertEqual([w["kind"] for w in json.loads(self.sluice("workers", "--all", "--json").stdout)],
                         ["serve", "run"])

    def test_two_daemons_starting_at_once_keep_each_others_types(self):
        # each registered itself only after its sync, so the first to sync did
        # not know the other's types and retired them
        first_env, second_env = self.probe_dirs("first_probe", "second_probe")
        both = {"first_probe": True, "second_probe": True}
        for name, env in (("first_probe", first_env), ("second_probe", second_env)):  # both available
            self.sluice("queue", name, "--at", "2099-01-01T00:00:00Z", env=env)
        self.assertEqual(self.probes_available(), both)
        # both start-ups held at their syncs until both are there
        sync = int(self.scalar("SELECT hashtext('sluice.sync_registry')"))
        with self.advisory_lock(sync):
            daemons = [self.serve("--no-watch", env=env) for env in (first_env, second_env)]
            self.wait_for(lambda: self.lock_waiters(sync) == 2, 30, "the start-ups did not both reach their syncs")
        for d in daemons:
            d.wait_log("sluice serving")
        self.assertEqual(self.probes_available(), both)
        for d in daemons:
            self.assertEqual(d.stop(), 0, d.log())

    # -------------------------------------------------------------- validation

    def test_cli_validation_good_and_bad_per_rule(self):
        self.brand("Acme")
        good = [
            {"competitor_amazon_url_id": URL_A},
            {"competitor_amazon_url_id": URL_A, "asin": "B01ABC", "max_reviews": 5000, "min_rating": 4.5,
             "sort": "helpful", "keywords": ["soft", "warm"], "source_url": "https://example.com/x",
             "include_keywords": False},
            {"competitor_amazon_url_id": URL_B.upper(), "max_reviews": 1.0, "keywords": None},
        ]
        for params in good:
            proc = self.sluice("queue", "review_probe", "--brand", "Acme", "--params", json.dumps(params),
                               check=False)
            self.assertEqual(proc.returncode, 0, f"{params}: {proc.stderr}")
        stored = self.sql("SELECT parameters FROM sluice.scheduled_jobs ORDER BY created_at")
        self.assertEqual(stored[0]["parameters"]["asin"], "UNKNOWN")  # defaults applied
        self.assertEqual(stored[0]["parameters"]["max_reviews"], 500)
        self.assertEqual(stored[2]["parameters"]["max_reviews"], 1)  # 1.0 is an integer
        bad = [
            ({"competitor_amazon_url_id": URL_A, "max_review": 5},
             "unknown parameter 'max_review' — did you mean 'max_reviews'?"),
            ({}, "competitor_amazon_url_id: is required"),
            ({"competitor_amazon_url_id": "not-a-uuid"}, 'competitor_amazon_url_id: must be a uuid, got "not-a-uuid"'),
            ({"competitor_amazon_url_id": URL_A, "max_reviews": "ten"},
             'max_reviews: must be an integer, got string "ten"'),
            ({"competitor_amazon_url_id": URL_A, "max_reviews": 1.5}, "max_reviews: must be an integer, got number 1.5"),
            ({"competitor_amazon_url_id": URL_A, "max_reviews": 0}, "max_reviews: must be at least 1, got 0"),
            ({"competitor_amazon_url_id": URL_A, "min_rating": 5.5}, "min_rating: must be at most 5, got 5.5"),
            # the value said with the digits that tell it from the bound
            ({"competitor_amazon_url_id": URL_A, "min_rating": 5.000000000000001},
             "min_rating: must be at most 5, got 5.000000000000001"),
            # below the 64-bit range: not an integer (it used to round onto -2^63)
            ({"competitor_amazon_url_id": URL_A, "max_reviews": -9223372036854775809},
             "max_reviews: must be an integer, got number -9.223372036854776e+18"),
            ({"competitor_amazon_url_id": URL_A, "include_keywords": "yes"},
             'include_keywords: must be a boolean, got string "yes"'),
            ({"competitor_amazon_url_id": URL_A, "sort": "newest"},
             'sort: must be one of recent, helpful; got "newest"'),
            ({"competitor_amazon_url_id": URL_A, "asin": "b01abc"},
             'asin: must match pattern [A-Z0-9]+, got "b01abc"'),
            ({"competitor_amazon_url_id": URL_A, "keywords": []}, "keywords: must have at least 1 item, got 0"),
            ({"competitor_amazon_url_id": URL_A, "keywords": ["ok", 3]}, "keywords[2]: must be a string, got number 3"),
            ({"competitor_amazon_url_id": URL_A, "source_url": "ftp://x"},
             'source_url: must be an http(s) URL, got "ftp://x"'),
            ({"competitor_amazon_url_id": URL_A, "asin": None}, "asin: must not be null"),
            # what Postgres cannot store, named (it used to be Postgres' own error)
            ({"competitor_amazon_url_id": URL_A, "keywords": ["ok", "a\u0000b"]},
             "keywords[2]: contains a NUL byte (Postgres cannot store it)"),
            ({"competitor_amazon_url_id": URL_A, "keywords": ["bad \udcff byte"]},  # a raw 0xFF
             "keywords[1]: is not valid UTF-8 (Postgres cannot store it)"),
        ]
        for params, message in bad:
            proc = self.sluice("queue", "review_probe", "--brand", "Acme", "--params",
                               json.dumps(params, ensure_ascii=False), check=False)
            self.assertEqual(proc.returncode, 2, f"{params} was accepted")
            self.assertIn(message, proc.stderr, params)
        # every problem at once
        proc = self.sluice("queue", "review_probe", "--brand", "Acme", "--params",
                           json.dumps({"max_reviews": 0, "sort": "x"}), check=False)
        self.assertIn("competitor_amazon_url_id: is required; max_reviews: must be at least 1, got 0; "
                      "sort: must be one of recent, helpful; got \"x\"", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), len(good))

    def test_sql_enqueue_rejections(self):
        acme = self.brand("Acme")
        self.sync()
        ok, job, err = psql(self.db, f"SELECT sluice.queue_one_time_job('Acme', 'review_probe', "
                                     f"'{{\"competitor_amazon_url_id\": \"{URL_A}\"}}')")
        self.assertEqual(ok, 0, err)
        row = self.one(f"SELECT brand_id, parameters FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual(row["brand_id"], acme)
        self.assertEqual(row["parameters"]["sort"], "recent")
        cases = [
            (f"'Acme', 'review_probe', '{{\"competitor_amazon_url_id\": \"{URL_A}\", \"sortt\": \"recent\"}}'",
             "unknown parameter 'sortt' — did you mean 'sort'?"),
            (f"'Acme', 'review_probe', '{{\"competitor_amazon_url_id\": \"{URL_A}\", \"max_reviews\": \"many\"}}'",
             'max_reviews: must be an integer, got string "many"'),
            (f"'Acme', 'review_probe', '{{\"competitor_amazon_url_id\": \"{URL_A}\", \"min_rating\": -1}}'",
             "min_rating: must be at least 0, got -1"),
            ("'Acme', 'review_probe', '{}'", "competitor_amazon_url_id: is required"),
            (f"NULL::text, 'review_probe', '{{\"competitor_amazon_url_id\": \"{URL_A}\"}}'",
             "job type 'review_probe' needs a brand"),
            ("'Acme', 'review_prob', '{}'", "unknown job type 'review_prob' — did you mean 'review_probe'?"),
            ("'Nope', 'review_probe', '{}'", "unknown brand 'Nope'"),
        ]
        for args, message in cases:
            status, out, err = psql(self.db, f"SELECT sluice.queue_one_time_job({args})")
            self.assertNotEqual(status, 0, f"{args} was accepted: {out}")
            self.assertIn(message, err, args)
        # more retries than the backoff can count (2^attempts overflowed past 1025)
        status, out, err = psql(self.db, f"SELECT sluice.enqueue('Acme', 'review_probe', "
                                         f"'{{\"competitor_amazon_url_id\": \"{URL_A}\"}}', p_max_retries => 1001)")
        self.assertNotEqual(status, 0, out)
        self.assertIn("max_retries must be a whole number from 0 to 1000, not 1001", err)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)

    def test_sql_queue_functions_check_options_as_the_cli_does(self):
        self.sync()
        priority = "priority must be a whole number from -1000000 to 1000000, not {}"
        retries = "max_retries must be a whole number from 0 to 1000, not {}"
        source = "trigger_source must be one of scheduled, manual, api, repl, not '{}'"
        cases = [
            ("sluice.queue_one_time_job(NULL::text, 'noop', '{}', NULL, 1000001)", priority.format(1000001)),
            ("sluice.enqueue(NULL, 'noop', p_priority => -2147483648)", priority.format(-2147483648)),
            ("sluice.enqueue_many(NULL, 'noop', ARRAY['{}'::jsonb], NULL, 2000000)", priority.format(2000000)),
            ("sluice.schedule_job(NULL, 'noop', '* * * * *', p_priority => -1000001)",
             priority.format(-1000001)),
            ("sluice.queue_one_time_job(NULL::text, 'noop', '{}', NULL, 0, NULL, -1)", retries.format(-1)),
            ("sluice.schedule_job(NULL, 'noop', '* * * * *', p_max_retries => 1001)", retries.format(1001)),
            ("sluice.enqueue(NULL, 'noop', p_dedupe_key => '')",
             "dedupe_key must not be empty: give a key, or NULL for none"),
            ("sluice.enqueue(NULL, 'noop', p_name => '')", "name must not be empty: give a name, or NULL for none"),
            ("sluice.schedule_job(NULL, 'noop', '* * * * *', p_name => '')",
             "name must not be empty: give a name, or NULL for none"),
            ("sluice.queue_one_time_job(NULL::text, 'noop', '{}', NULL, 0, NULL, NULL, 'cron')", source.format("cron")),
            ("sluice.enqueue_many(NULL, 'noop', ARRAY['{}'::jsonb], p_trigger_source => '')", source.format("")),
            ("sluice.schedule_job(NULL, 'noop', '* * * * *', p_trigger_source => 'API')", source.format("API")),
        ]
        for sql, message in cases:
            err = self.sql_error(f"SELECT {sql}")
            self.assertIn(f"ERROR:  22023: {message}\n", err, sql)
            self.assertNotIn("constraint", err, sql)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        # NULL is each option's default, and the bounds themselves are taken
        for sql in ("sluice.queue_one_time_job(NULL::text, 'noop', '{}', NULL, NULL, NULL, NULL, NULL)",
                    "sluice.enqueue(NULL, 'noop', '{}', NULL, 1000000, 'k', 1000, 'repl', 'n')",
                    "sluice.enqueue_many(NULL, 'noop', ARRAY['{}'::jsonb], NULL, -1000000, 'manual')",
                    "sluice.schedule_job(NULL, 'noop', '* * * * *', 'UTC', '{}', NULL, NULL, NULL, 0, NULL)"):
            status, _, err = psql(self.db, f"SELECT {sql}")
            self.assertEqual(status, 0, f"{sql}: {err}")
        self.assertEqual(self.count("sluice.scheduled_jobs"), 4)
        self.assertEqual(self.one("SELECT priority, trigger_source FROM sluice.scheduled_jobs "
                                  "WHERE max_retries IS NULL AND schedule_type = 'one_time' "
                                  "AND trigger_source = 'api'"), {"priority": 0, "trigger_source": "api"})

    def test_worker_rejects_invalid_parameters_permanently(self):
        self.brand("Acme")
        self.sync()
        # written past the checks, as a bad client could: the run refuses it and does not retry
        job = str(uuid.uuid4())
        self.scalar(f"INSERT INTO sluice.scheduled_jobs (id, brand_id, job_type, parameters, next_run_at) "
                    f"SELECT '{job}', id, 'review_probe', '{{\"competitor_amazon_url_id\": \"nope\"}}', "
                    f"now() FROM sluice.brands")
        with self.serve():
            self.wait_jobs_done(1)
        runs = self.sql(f"SELECT status, error_message FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
        self.assertEqual(len(runs), 1, runs)
        self.assertEqual(runs[0]["status"], "failed")
        self.assertIn('invalid parameters: competitor_amazon_url_id: must be a uuid, got "nope"',
                      runs[0]["error_message"])
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"], "failed")
        self.assertEqual(self.status_row("amazon_reviews", self.one("SELECT id FROM sluice.brands")["id"])
                         ["last_status"], "failed")

    # -------------------------------------------------------------- freshness

    def test_skipped_dataset_keeps_its_state(self):
        acme = self.brand("Acme")
        # never run: a skip leaves it never run
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "skip_beta"}')
        self.assertEqual(self.status_row("alpha_data", acme)["last_status"], "completed")
        self.assertIsNone(self.status_row("beta_data", acme))
        # failing: a skip leaves it failing, with its error
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "fail"}', check=False)
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "skip_beta"}')
        beta = self.status_row("beta_data", acme)
        self.assertEqual(beta["last_status"], "failed")
        self.assertIn("probe failed on purpose", beta["error_message"])
        # fresh: a skip leaves it fresh, with its record count, and its last run
        # is still the one that refreshed it
        self.run_fg("fresh_probe", "--brand", "Acme")
        before = self.status_row("beta_data", acme)
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "skip_beta"}')
        beta = self.status_row("beta_data", acme)
        self.assertEqual((beta["last_status"], beta["records_affected"]), ("completed", 7))
        for key in ("last_run_id", "last_attempt_at", "source_job_id", "last_success_at"):
            self.assertEqual(beta[key], before[key], key)
        alpha = self.status_row("alpha_data", acme)
        self.assertEqual(alpha["records_affected"], 2)
        self.assertNotEqual(alpha["last_run_id"], before["last_run_id"])  # alpha did run

    def test_freshness_running_then_completed_then_failing(self):
        acme = self.brand("Acme")
        self.sync()
        self.assertEqual(self.health_states("--brand", "Acme", "--type", "fresh_probe"),
                         {("Acme", "alpha_data"): "never", ("Acme", "beta_data"): "never"})
        self.assertIsNone(self.status_row("alpha_data", acme))
        slow = subprocess.Popen([harness.pgfixture.sluice_bin(), "run", "fresh_probe", "--brand", "Acme",
                                 "--params", '{"sleep": 2}'], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.wait_for(lambda: (self.status_row("alpha_data", acme) or {}).get("last_status") == "running",
                          20, "freshness never went to running at claim")
            self.assertEqual(self.health_states("--brand", "Acme", "--type", "fresh_probe"),
                             {("Acme", "alpha_data"): "running", ("Acme", "beta_data"): "running"})
        finally:
            out, err = slow.communicate(timeout=60)
        self.assertEqual(slow.returncode, 0, err)
        first = self.status_row("alpha_data", acme)
        self.assertEqual((first["last_status"], first["records_affected"], first["error_message"]),
                         ("completed", 7, None))
        self.assertIsNotNone(first["last_success_at"])
        run = self.one("SELECT id, scheduled_job_id FROM sluice.scheduled_job_runs")
        self.assertEqual((first["last_run_id"], first["source_job_id"]), (run["id"], run["scheduled_job_id"]))
        self.assertEqual(self.health_states("--brand", "Acme", "--type", "fresh_probe"),
                         {("Acme", "alpha_data"): "fresh", ("Acme", "beta_data"): "fresh"})

        self.assertEqual(self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "fail"}',
                                     check=False).returncode, 1)
        failed = self.status_row("alpha_data", acme)
        self.assertEqual(failed["last_status"], "failed")
        self.assertIn("probe failed on purpose", failed["error_message"])
        self.assertEqual(failed["last_success_at"], first["last_success_at"])  # kept from before
        self.assertEqual(failed["records_affected"], 7)
        rows = self.view_json("health", "--brand", "Acme", "--type", "fresh_probe")
        self.assertEqual([r["state"] for r in rows], ["failing", "failing"])
        self.assertIn("probe failed on purpose", rows[0]["last_error"])
        self.assertIs(rows[0]["healthy"], False)

    def test_runs_ended_together_settle_the_dataset_their_last_claim_marked(self):
        # two runs keeping one dataset end in one finish_runs() call (a worker
        # records its ended runs in batches); the row belongs to the run claimed
        # last, while the other ended later: the dataset stayed "running" for
        # good, as no run was left to settle it
        acme = self.brand("Acme")
        self.sync()
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        self.scalar("SELECT sluice.queue_one_time_job('Acme', 'echo'), sluice.queue_one_time_job('Acme', 'echo')")
        runs = self.sql(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        self.assertEqual(len(runs), 2)
        owner = self.status_row("echo_data", acme)
        self.assertEqual(owner["last_status"], "running")
        other = next(r["run_id"] for r in runs if r["run_id"] != owner["last_run_id"])
        now = time.time()
        ended = [{"run_id": owner["last_run_id"], "status": "completed", "result": {}, "finished_at": now - 1},
                 {"run_id": other, "status": "completed", "result": {}, "finished_at": now}]
        self.scalar(f"SELECT count(*) FROM sluice.finish_runs('{json.dumps(ended)}')")
        row = self.status_row("echo_data", acme)
        self.assertEqual(row["last_status"], "completed")
        self.assertEqual(row["last_success_at"],
                         self.scalar(f"SELECT to_json(completed_at) #>> '{{}}' FROM sluice.scheduled_job_runs "
                                     f"WHERE id = '{other}'"))
        self.assertEqual(self.health_states("--brand", "Acme", "--type", "echo"), {("Acme", "echo_data"): "fresh"})

    def test_early_return_still_completes_the_datasets(self):
        proc = self.run_fg("fresh_probe", "--params", '{"mode": "return_nil"}')
        self.assertEqual(proc.stdout.strip(), "null")
        for key in ("alpha_data", "beta_data"):
            row = self.status_row(key)
            self.assertEqual(row["last_status"], "completed", key)
            self.assertIsNotNone(row["last_success_at"])
            self.assertIsNone(row["records_affected"])

    def test_one_dataset_succeeds_while_another_fails(self):
        self.run_fg("fresh_probe", "--params", '{"mode": "partial", "records": 5}')
        self.assertEqual(self.one("SELECT status FROM sluice.scheduled_job_runs")["status"], "completed")
        alpha, beta = self.status_row("alpha_data"), self.status_row("beta_data")
        self.assertEqual((alpha["last_status"], alpha["records_affected"], alpha["metadata"]),
                         ("completed", 5, {"source": "probe"}))
        self.assertEqual((beta["last_status"], beta["error_message"]), ("failed", "beta source unavailable"))
        self.assertIsNone(beta["last_success_at"])
        self.assertEqual(self.health_states("--platform", "--type", "fresh_probe"),
                         {(None, "alpha_data"): "fresh", (None, "beta_data"): "failing"})

    def test_a_record_count_that_is_not_one_is_refused(self):
        # 1e30 as the returned count: Postgres refused the whole outcome (bigint
        # out of range), and the run was recorded as "could not be recorded"
        proc = self.run_fg("fresh_probe", "--json", "--params", '{"mode": "huge_records"}', check=False)
        out = json.loads(proc.stdout)
        self.assertEqual((out["status"], out["recorded"], out["job_status"]), ("failed", True, "failed"))
        self.assertEqual(out["error"], "the handler's return value: records (the record count of fresh_probe's "
                                       "datasets) must be a whole number of at least 0, got number 1e+30")
        self.assertEqual(self.status_row("alpha_data")["last_status"], "failed")
        # a report's count and metadata are checked when it is made; a table as
        # the error of :fail() is kept as JSON, not as "table: 0x…"
        proc = self.run_fg("fresh_probe", "--json", "--params", '{"mode": "bad_report"}')
        out = json.loads(proc.stdout)
        self.assertEqual(out["status"], "completed")
        ok, err, ok2, err2 = out["result"]["refused"]
        self.assertFalse(ok)
        self.assertIn("job.dataset: records must be a whole number of at least 0, or nil, got number -1", err)
        self.assertFalse(ok2)
        self.assertIn('job.dataset: metadata must be a table, or nil, got string "not a table"', err2)
        alpha, beta = self.status_row("alpha_data"), self.status_row("beta_data")
        self.assertEqual((alpha["last_status"], alpha["records_affected"]), ("completed", 3))
        self.assertEqual((beta["last_status"], beta["error_message"]), ("failed", 'error value {"code":7}'))
        # an error's message is read the same way for the run and for :fail()
        proc = self.run_fg("fresh_probe", "--json", "--params", '{"mode": "message_number"}', check=False)
        self.assertEqual(json.loads(proc.stdout)["error"], "42", proc.stdout)
        self.assertEqual(self.status_row("beta_data")["error_message"], "42")
        proc = self.run_fg("fresh_probe", "--json", "--params", '{"mode": "guarded_text"}', check=False)
        self.assertEqual(json.loads(proc.stdout)["error"], "guarded\ufffdtext", proc.stdout)
        self.assertEqual(self.status_row("beta_data")["error_message"], "guarded\ufffdtext")

    def test_platform_scope_is_one_row_per_dataset(self):
        acme = self.brand("Acme")
        self.run_fg("fresh_probe")
        self.run_fg("fresh_probe", "--params", '{"records": 9}')
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"records": 3}')
        self.assertEqual(self.count("sluice.dataset_status", "dataset_key = 'alpha_data' AND brand_id IS NULL"), 1)
        self.assertEqual(self.status_row("alpha_data")["records_affected"], 9)
        self.assertEqual(self.status_row("alpha_data", acme)["records_affected"], 3)
        # the table refuses a second platform row: NULL brands are not distinct
        status, _, err = psql(self.db, "INSERT INTO sluice.dataset_status (dataset_key, last_status) "
                                       "VALUES ('alpha_data', 'completed')")
        self.assertNotEqual(status, 0)
        self.assertIn("duplicate key", err)
        platform = self.view_json("health", "--platform", "--type", "fresh_probe")
        self.assertEqual([(r["brand_id"], r["dataset_key"], r["state"]) for r in platform],
                         [(None, "alpha_data", "fresh"), (None, "beta_data", "fresh")])

    def test_stale_after_max_age(self):
        acme = self.brand("Acme")
        self.run_fg("fresh_probe", "--brand", "Acme")
        self.scalar(f"UPDATE sluice.dataset_status SET last_success_at = now() - interval '2 hours' "
                    f"WHERE brand_id = '{acme}'")
        rows = {r["dataset_key"]: r for r in self.view_json("health", "--brand", "Acme", "--type", "fresh_probe")}
        self.assertEqual(rows["alpha_data"]["state"], "stale")  # max age 1 hour
        self.assertEqual(rows["beta_data"]["state"], "fresh")   # max age 1 day
        self.assertAlmostEqual(rows["alpha_data"]["age_seconds"], 7200, delta=60)
        self.assertEqual(rows["alpha_data"]["max_age_seconds"], 3600)
        self.assertEqual(self.scalar("SELECT sluice.needs_refresh('Acme', 'fresh_probe')"), "t")
        table = self.sluice("health", "--brand", "Acme", "--type", "fresh_probe",
                            env=self.env({"COLUMNS": "200"})).stdout
        self.assertRegex(table, r"alpha_data\s+Alpha Data\s+🟡 stale\s+2h\s+1h\s+completed")
        self.run_fg("fresh_probe", "--brand", "Acme")
        self.assertEqual(self.scalar("SELECT sluice.needs_refresh('Acme', 'fresh_probe')"), "f")
        # a misspelt type is an error, not "no refresh needed"
        with self.assertRaisesRegex(RuntimeError, "unknown job type 'fresh_prob' — did you mean 'fresh_probe'"):
            self.scalar("SELECT sluice.needs_refresh('Acme', 'fresh_prob')")

    def test_job_type_freshness_refuses_an_unknown_type_or_brand(self):
        acme = self.brand("Acme")
        self.run_fg("fresh_probe", "--brand", "Acme")
        rows = self.sql(f"SELECT dataset_key, state FROM sluice.job_type_freshness('fresh_probe', '{acme}')")
        self.assertEqual(rows, [{"dataset_key": "alpha_data", "state": "fresh"},
                                {"dataset_key": "beta_data", "state": "fresh"}])
        # the platform scope, and a type that keeps no datasets: no rows, no error
        self.assertEqual([r["state"] for r in self.sql(
            "SELECT state FROM sluice.job_type_freshness('fresh_probe', NULL)")], ["never", "never"])
        self.assertEqual(self.sql("SELECT * FROM sluice.job_type_freshness('noop', NULL)"), [])
        # a misspelt type read as "keeps nothing", an id of no brand as "never
        # refreshed": both are errors, as for needs_refresh() and queueing
        for sql, message in (
                (f"sluice.job_type_freshness('fresh_prob', '{acme}')",
                 "ERROR:  22023: unknown job type 'fresh_prob' — did you mean 'fresh_probe'?"),
                ("sluice.job_type_freshness('fresh_probe', '00000000-0000-4000-8000-000000000000')",
                 "ERROR:  P0002: unknown brand '00000000-0000-4000-8000-000000000000'")):
            self.assertIn(message, self.sql_error(f"SELECT * FROM {sql}"), sql)

    def test_health_matrix_lists_every_brand_and_dataset(self):
        # no brands yet: the platform scope stands for every dataset
        self.sync()
        rows = self.view_json("health")
        datasets = {r["dataset_key"] for r in rows}
        self.assertTrue({"alpha_data", "beta_data", "amazon_reviews", "echo_data"} <= datasets, datasets)
        self.assertTrue(all(r["brand_id"] is None and r["state"] == "never" for r in rows))
        self.assertEqual(set(rows[0]), {
            "brand_id", "brand_name", "dataset_key", "dataset_label", "job_types", "state", "healthy",
            "max_age_seconds", "age_seconds", "fresh_until", "last_status", "last_attempt_at",
            "last_success_at", "last_run_id", "source_job_id", "records_affected", "metadata",
            "last_error", "updated_at", "stuck"})
        # with brands: brand × dataset, never until something runs; platform rows only where kept
        self.brand("Acme")
        self.brand("Beta")
        self.run_fg("fresh_probe", "--brand", "Beta")
        rows = self.view_json("health")
        by = {(r["brand_name"], r["dataset_key"]): r for r in rows}
        self.assertEqual(len(rows), 2 * len(datasets))
        self.assertEqual(by[("Acme", "alpha_data")]["state"], "never")
        self.assertIsNone(by[("Acme", "alpha_data")]["last_status"])
        self.assertEqual(by[("Beta", "alpha_data")]["state"], "fresh")
        self.assertEqual(by[("Beta", "alpha_data")]["job_types"], ["fresh_probe"])
        self.run_fg("fresh_probe")
        rows = self.view_json("health")
        self.assertEqual(sorted(r["dataset_key"] for r in rows if r["brand_id"] is None),
                         ["alpha_data", "beta_data"])
        table = self.sluice("health", env=self.env({"COLUMNS": "200"})).stdout
        self.assertRegex(table, r"\(platform\)\s+alpha_data\s+Alpha Data\s+🟢 fresh")
        self.assertRegex(table, r"Acme\s+amazon_reviews\s+Amazon Reviews\s+⚪ never\s+—\s+7d\s+—")
        self.assertIn(f"{len(rows)} datasets: 4 fresh, 0 running, 0 stale, 0 failing, {len(rows) - 4} never",
                      table)

    def test_health_check_exit_codes(self):
        acme = self.brand("Acme")
        scoped = ("health", "--brand", "Acme", "--type", "fresh_probe", "--check")
        never = self.sluice(*scoped, check=False)
        self.assertEqual(never.returncode, 1, never.stderr)
        self.assertIn("unhealthy: 0 stale, 0 failing, 2 never completed", never.stderr)
        # the view's `healthy` says so too: false, not NULL, so `WHERE NOT healthy` finds them
        rows = self.view_json("health", "--brand", "Acme", "--type", "fresh_probe")
        self.assertEqual([(r["state"], r["healthy"]) for r in rows], [("never", False)] * 2)
        self.assertEqual(self.scalar("SELECT count(*) FROM sluice.dataset_health "
                                     f"WHERE brand_id = '{acme}' AND 'fresh_probe' = ANY (job_types) "
                                     "AND NOT healthy"), "2")
        self.run_fg("fresh_probe", "--brand", "Acme")
        fresh = self.sluice(*scoped, check=False)
        self.assertEqual(fresh.returncode, 0, fresh.stderr)
        self.assertEqual(self.sluice(*scoped, "--json", check=False).returncode, 0)
        self.scalar(f"UPDATE sluice.dataset_status SET last_success_at = now() - interval '2 hours' "
                    f"WHERE brand_id = '{acme}' AND dataset_key = 'alpha_data'")
        stale = self.sluice(*scoped, check=False)
        self.assertEqual(stale.returncode, 1)
        self.assertIn("unhealthy: 1 stale, 0 failing, 0 never completed", stale.stderr)
        self.assertEqual(self.sluice(*scoped, "--json", check=False).returncode, 1)
        self.run_fg("fresh_probe", "--brand", "Acme", "--params", '{"mode": "partial"}')
        failing = self.sluice(*scoped, check=False)
        self.assertEqual(failing.returncode, 1)
        self.assertIn("0 stale, 1 failing", failing.stderr)
        self.run_fg("fresh_probe", "--brand", "Acme")
        self.assertEqual(self.sluice(*scoped, check=False).returncode, 0)
        # unscoped: other datasets were never kept for Acme, so not healthy
        self.assertEqual(self.sluice("health", "--check", check=False).returncode, 1)
        # without --check the exit status is 0 whatever the state
        self.assertEqual(self.sluice("health", check=False).returncode, 0)
        # filters that match nothing leave nothing to check: that is no pass
        for args in (("--type", "noop"), ("--type", "noop", "--json"), ("--platform", "--type", "review_probe")):
            proc = self.sluice("health", *args, "--check", check=False)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stdout}{proc.stderr}")
            self.assertIn("health --check: no datasets match the filters", proc.stderr)
        self.assertEqual(self.sluice("health", "--type", "noop", check=False).returncode, 0)

    def test_health_check_reports_a_dataset_stuck_running(self):
        # a dataset whose run was in flight counted as healthy however long it
        # had been: with its worker dead and none alive to rescue it, --check
        # passed for ever
        acme = self.brand("Acme")
        scoped = ("health", "--brand", "Acme", "--type", "fresh_probe", "--check")
        self.sluice("queue", "fresh_probe", "--brand", "Acme", "--params", '{"sleep": 60}')
        d = self.serve()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 60,
                      "the run never started")
        d.kill()  # the only worker: nothing will fail its run
        run = self.scalar("SELECT id FROM sluice.scheduled_job_runs")
        # in flight, within its lease: a refresh under way
        proc = self.sluice(*scoped, check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        # its lease expired more than a minute ago, and nobody failed it
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - interval '2 minutes' "
                    f"WHERE id = '{run}'")
        proc = self.sluice(*scoped, env=self.env({"COLUMNS": "250"}), check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("unhealthy: 0 stale, 0 failing, 0 never completed, 2 stuck running", proc.stderr)
        self.assertIn("stuck: its run's lease expired at", proc.stdout)
        self.assertIn("2 datasets: 0 fresh, 2 running, 0 stale, 0 failing, 0 never (2 running stuck)", proc.stdout)
        rows = json.loads(self.sluice(*scoped, "--json", check=False).stdout)
        self.assertEqual([(r["state"], r["healthy"]) for r in rows], [("running", False)] * 2)
        self.assertTrue(all("no worker has failed it" in r["stuck"] for r in rows), rows)
        # within its lease again, but running longer than alpha's max age (1 hour)
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() + interval '1 minute' "
                    f"WHERE id = '{run}'; UPDATE sluice.dataset_status SET last_attempt_at = now() - "
                    f"interval '2 hours' WHERE brand_id = '{acme}'")
        proc = self.sluice(*scoped, check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("0 never completed, 1 stuck running", proc.stderr)
        rows = {r["dataset_key"]: r for r in json.loads(self.sluice(*scoped, "--json", check=False).stdout)}
        self.assertFalse(rows["alpha_data"]["healthy"])
        self.assertIn("longer than the dataset's max age (3600 s)", rows["alpha_data"]["stuck"])
        self.assertTrue(rows["beta_data"]["healthy"])  # a max age of a day
        self.assertIsNone(rows["beta_data"]["stuck"])
        # the run ended, yet the rows still say running
        self.scalar(f"UPDATE sluice.dataset_status SET last_attempt_at = now() WHERE brand_id = '{acme}'; "
                    f"UPDATE sluice.scheduled_job_runs SET status = 'failed', completed_at = now() "
                    f"WHERE id = '{run}'")
        rows = json.loads(self.sluice(*scoped, "--json", check=False).stdout)
        self.assertTrue(all(r["stuck"] == f"its run {run} is no longer in flight (failed), yet the dataset "
                                          f"was not settled" for r in rows), rows)
        self.assertEqual(self.sluice(*scoped, check=False).returncode, 1)

    def test_queue_if_stale_both_ways(self):
        acme = self.brand("Acme")
        first = self.sluice("queue", "fresh_probe", "--brand", "Acme", "--if-stale")
        self.assertRegex(first.stdout.strip(), r"^[0-9a-f-]{36}$")
        self.assertIn("alpha_data is never completed for Acme", first.stderr)
        self.scalar("DELETE FROM sluice.scheduled_jobs")
        self.run_fg("fresh_probe", "--brand", "Acme")
        fresh = self.sluice("queue", "fresh_probe", "--brand", "Acme", "--if-stale")
        self.assertEqual(fresh.stdout, "")
        self.assertRegex(fresh.stderr, r"fresh_probe is fresh for Acme: alpha_data until \d{4}-\d\d-\d\d "
                                       r"\d\d:\d\d:\d\dZ \(in (59m|1h)\); beta_data until .*; nothing queued")
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'active'"), 0)
        # the platform scope is separate: never kept, so it is queued
        platform = self.sluice("queue", "fresh_probe", "--if-stale")
        self.assertRegex(platform.stdout.strip(), r"^[0-9a-f-]{36}$")
        self.scalar("DELETE FROM sluice.scheduled_jobs WHERE status = 'active'")
        self.scalar(f"UPDATE sluice.dataset_status SET last_success_at = now() - interval '2 hours' "
                    f"WHERE brand_id = '{acme}' AND dataset_key = 'alpha_data'")
        stale = self.sluice("queue", "fresh_probe", "--brand", "Acme", "--if-stale")
        self.assertRegex(stale.stdout.strip(), r"^[0-9a-f-]{36}$")
        self.assertIn("alpha_data is stale for Acme", stale.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'active'"), 1)
        self.assert_one_line_error(self.sluice("queue", "noop", "--if-stale", check=False),
                                   "job type 'noop' keeps no datasets")
        bad = self.sluice("queue", "fresh_probe", "--brand", "Nope", "--if-stale", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown brand 'Nope'", bad.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'active'"), 1)
        # a stale dataset said "queueing needs_brand" before the queueing was refused
        refused = self.sluice("queue", "needs_brand", "--if-stale", check=False)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("job type 'needs_brand' needs a brand", refused.stderr)
        self.assertNotIn("queueing", refused.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'active'"), 1)

    # -------------------------------------------------------------- runs, jobs, show

    def test_runs_view_filters_and_json(self):
        self.brand("Acme")
        for i in range(3):
            self.run_fg("review_probe", "--brand", "Acme", "--params",
                        json.dumps({"competitor_amazon_url_id": URL_A, "max_reviews": 10 + i}))
        for i in range(4):
            self.run_fg("review_probe", "--brand", "Acme", "--params",
                        json.dumps({"competitor_amazon_url_id": URL_B, "asin": f"B0{i}"}))
        self.run_fg("review_probe", "--brand", "Acme", "--params",
                    json.dumps({"competitor_amazon_url_id": URL_B, "asin": "FAIL"}), check=False)
        self.run_fg("echo", "--params", '{"message": "platform run"}')

        runs = self.view_json("runs")
        self.assertEqual(len(runs), 5)  # the default limit
        self.assertEqual(runs[0]["job_type"], "echo")  # newest first
        self.assertEqual(set(runs[0]), {
            "run_id", "job_id", "job_type", "job_label", "emoji", "brand_id", "brand_name", "status",
            "attempt_number", "max_retries", "trigger_source", "schedule_type", "created_at", "started_at",
            "completed_at", "duration_seconds", "parameters", "params_preview", "error_message",
            "log_tail", "log_summary", "handler_version", "worker_id", "lease_expires_at"})
        by_a = self.view_json("runs", "--param", f"competitor_amazon_url_id={URL_A}")
        self.assertEqual([r["parameters"]["max_reviews"] for r in by_a], [12, 11, 10])
        self.assertEqual(by_a[0]["params_preview"], f"competitor_amazon_url_id={URL_A}, max_reviews=12")
        self.assertEqual(by_a[0]["log_summary"], f"reviews for UNKNOWN ({URL_A})")
        both = self.view_json("runs", "--param", f"competitor_amazon_url_id={URL_B}", "--param", "asin=B02")
        self.assertEqual([r["parameters"]["asin"] for r in both], ["B02"])
        numeric = self.view_json("runs", "--param", "max_reviews=11")  # compared as text
        self.assertEqual(len(numeric), 1)
        self.assertEqual(len(self.view_json("runs", "--type", "review_probe", "--limit", "100")), 8)
        self.assertEqual(len(self.view_json("runs", "--type", "review_probe", "--limit", "2")), 2)
        failed = self.view_json("runs", "--status", "failed")
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["log_summary"], "asin FAIL cannot be scraped")
        # the log ends in the error's traceback; the tail a page shows is what the
        # run said, not the traceback's frames
        logs = self.one(f"SELECT logs FROM sluice.scheduled_job_runs WHERE id = '{failed[0]['run_id']}'")["logs"]
        self.assertIn("stack traceback:\n\t", logs)
        tail = failed[0]["log_tail"].splitlines()
        self.assertRegex(tail[-1], r"^\d\d:\d\d:\d\d\.\d+ asin FAIL cannot be scraped$")
        self.assertNotIn("traceback", failed[0]["log_tail"])
        self.assertFalse(any(line.startswith("\t") for line in tail), tail)
        self.assertEqual([r["job_type"] for r in self.view_json("runs", "--platform")], ["echo"])
        self.assertEqual(len(self.view_json("runs", "--brand", "Acme", "--limit", "50")), 8)
        self.assertEqual(self.view_json("runs", "--type", "sleep"), [])

        table = self.sluice("runs", "--limit", "3", env=self.env({"COLUMNS": "250"})).stdout.splitlines()
        self.assertEqual(table[0].split(), ["RUN", "STATUS", "TYPE", "BRAND", "WHEN", "TOOK", "TRY",
                                            "PARAMS", "LOG"])
        self.assertEqual(len(table), 4)
        self.assertRegex(table[1], r"^[0-9a-f]{8}  ✅ completed  📣 echo\s+\(platform\)\s+just now\s+\S+\s+1/2\s+"
                                   r"message=platform run\s+echo: platform run$")
        self.assertRegex(table[2], r"❌ failed\s+📦 review_probe\s+Acme\s+.*\s1/4\s+.*asin=FAIL.*"
                                   r"asin FAIL cannot be scraped$")

    def test_jobs_view_and_dispatch(self):
        self.brand("Acme")
        self.sync()
        one = self.sluice("queue", "review_probe", "--brand", "Acme", "--at", "+1h", "--params",
                          json.dumps({"competitor_amazon_url_id": URL_A})).stdout.strip()
        self.scalar("INSERT INTO sluice.scheduled_jobs (job_type, schedule_type, cron_expression, timezone, "
                    "next_run_at) VALUES ('noop', 'recurring', '*/15 9-17 * * mon-fri', 'Europe/Berlin', "
                    "now() + interval '10 minutes')")
        self.run_fg("echo", "--params", '{"fail": true, "permanent": true}', check=False)
        jobs = self.view_json("jobs")
        self.assertEqual([j["job_type"] for j in jobs], ["noop", "review_probe", "echo"])
        self.assertEqual(set(jobs[0]), {
            "job_id", "job_type", "job_label", "emoji", "brand_id", "brand_name", "name", "schedule_type",
            "cron_expression", "timezone", "schedule", "status", "next_run_at", "priority", "attempts",
            "max_retries", "run_count", "last_run_at", "last_error", "current_run_id", "last_run_id",
            "last_run_status", "dedupe_key", "trigger_source", "parameters", "params_preview",
            "created_at", "updated_at"})
        self.assertEqual(jobs[0]["schedule"], "*/15 9-17 * * mon-fri (Europe/Berlin)")
        self.assertEqual(jobs[1]["job_id"], one)
        self.assertEqual(jobs[2]["status"], "failed")
        self.assertIn("echo was asked to fail permanently", jobs[2]["last_error"])
        self.assertEqual([j["job_type"] for j in self.view_json("jobs", "--status", "failed")], ["echo"])
        self.assertEqual(len(self.view_json("jobs", "--limit", "1")), 1)
        self.assertEqual([j["job_type"] for j in self.view_json("jobs", "--brand", "Acme")], ["review_probe"])
        self.assertEqual([j["job_type"] for j in
                          self.view_json("jobs", "--param", f"competitor_amazon_url_id={URL_A}")], ["review_probe"])

        table = self.sluice("jobs", env=self.env({"COLUMNS": "250"})).stdout.splitlines()
        self.assertEqual(table[0].split(), ["JOB", "TYPE", "BRAND", "SCHEDULE", "STATUS", "NEXT", "RUN",
                                            "TRIES", "LAST", "RUN", "LAST", "ERROR"])
        self.assertRegex(table[1], r"⚪ noop\s+\(platform\)\s+\*/15 9-17 \* \* mon-fri \(Europe/Berlin\)\s+"
                                   r"🟢 active\s+in (9|10)m\s+0/4\s+—")
        self.assertRegex(table[2], r"📦 review_probe\s+Acme\s+one-time\s+🟢 active\s+in (59m|1h)\s+0/4")
        self.assertRegex(table[3], r"📣 echo .*❌ failed\s+—\s+\d/2\s+❌ just now\s+echo was asked")

        # `jobs pause ID` is the lifecycle commands' entry, not a listing
        paused = self.sluice("jobs", "pause", one)
        self.assertIn("paused", paused.stdout)
        self.assertEqual(self.view_json("jobs", "--status", "paused")[0]["job_id"], one)

    def test_show_run_and_job(self):
        self.run_fg("echo", "--params", '{"message": "shown in full"}')
        run = self.one("SELECT id, scheduled_job_id, handler_version FROM sluice.scheduled_job_runs")
        text = self.sluice("show", run["id"]).stdout
        self.assertTrue(text.startswith(f"run {run['id']}\n"), text)
        self.assertRegex(text, r"status\s+✅ completed")
        self.assertRegex(text, r"type\s+📣 echo \(Echo\)")
        self.assertRegex(text, r"attempt\s+1 of 2")
        self.assertIn(run["handler_version"], text)
        self.assertRegex(text, r"\nlogs\n  \d\d:\d\d:\d\d\.\d{3} echo: shown in full\n")
        self.assertIn('"message": "shown in full"', text)
        by_prefix = self.sluice("show", run["id"][:8]).stdout
        self.assertTrue(by_prefix.startswith(f"run {run['id']}\n"))

        js = self.view_json("show", run["id"])
        self.assertEqual(set(js), {"kind", "run", "job"})
        self.assertEqual(js["kind"], "run")
        self.assertEqual(js["run"]["run_id"], run["id"])
        self.assertIn("echo: shown in full", js["run"]["logs"])
        self.assertEqual(js["run"]["result"]["message"], "shown in full")
        self.assertEqual(js["job"]["job_id"], run["scheduled_job_id"])

        job = self.sluice("show", run["scheduled_job_id"]).stdout
        self.assertTrue(job.startswith(f"job {run['scheduled_job_id']}\n"), job)
        self.assertRegex(job, r"schedule\s+one-time")
        self.assertRegex(job, r"\nruns\nRUN\s+STATUS\s+WHEN\s+TOOK\s+TRY\s+PARAMS\s+LOG\n" + run["id"][:8])
        jj = self.view_json("show", run["scheduled_job_id"])
        self.assertEqual(set(jj), {"kind", "job", "runs"})
        self.assertEqual(jj["kind"], "job")
        self.assertEqual([r["run_id"] for r in jj["runs"]], [run["id"]])

    def test_show_prints_no_control_characters(self):
        # a scraped page's text can carry terminal escapes: show prints them as
        # `cat -v` does (caret notation; C1 controls as M-^x), keeping new lines and tabs
        nasty = "a\x1b[31mred\x07bell\rcr\u009b2Jcsi\ttab\x7fdel"
        self.run_fg("echo", "--params", json.dumps({"message": nasty}))
        run = self.one("SELECT id, scheduled_job_id FROM sluice.scheduled_job_runs")
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET error_message = E'bad\\x1b]0;title\\x07\\nline 2' "
                    f"WHERE id = '{run['id']}'")
        self.scalar(f"UPDATE sluice.scheduled_jobs SET last_error = E'last\\x1b[2J' "
                    f"WHERE id = '{run['scheduled_job_id']}'")
        for args in ((run["id"],), (run["scheduled_job_id"],)):
            text = self.sluice("show", *args).stdout
            controls = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0]
            self.assertEqual(controls, [], text)
        text = self.sluice("show", run["id"]).stdout
        self.assertIn("echo: a^[[31mred^Gbell^McrM-^[2Jcsi\ttab^?del\n", text)
        self.assertRegex(text, r"error\s+bad\^\[\]0;title\^G\n\s+line 2\n")
        self.assertIn("last^[[2J", self.sluice("show", run["scheduled_job_id"]).stdout)
        # --json stays exact
        js = self.view_json("show", run["id"])
        self.assertIn(f"echo: {nasty}", js["run"]["logs"])
        self.assertEqual(js["run"]["result"]["message"], nasty)

    def test_run_prints_no_control_characters(self):
        # `sluice run` follows the run on the terminal: its log lines and its
        # error are the same text show prints, and reached the terminal raw
        nasty = "a\x1b[31mred\x07bell\rcr\u009b2Jcsi\ttab\x7fdel"
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "loud_fail.lua"), "w") as f:
                f.write("return { max_retries = 0, params = { m = { type = \"string\" } },\n"
                        "  run = function(job) error(job.params.m, 0) end }\n")
            env = self.env({"SLUICE_HANDLERS": ":".join([d, *self.handlers])})
            logged = self.sluice("run", "echo", "--params", json.dumps({"message": nasty}), env=env)
            failed = self.sluice("run", "loud_fail", "--params", json.dumps({"m": nasty}), env=env,
                                 check=False)
        self.assertEqual(failed.returncode, 1)
        for text in (logged.stderr, failed.stderr):
            controls = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0]
            self.assertEqual(controls, [], text)
        self.assertIn("echo: a^[[31mred^Gbell^McrM-^[2Jcsi\ttab^?del\n", logged.stderr)
        self.assertRegex(failed.stderr, r"failed after \d+\.\d\ds: a\^\[\[31mred\^Gbell\^McrM-\^\[2Jcsi\ttab\^\?del; "
                                        r"then job failed: no retries left \(1 of 1\)\n")
        # stdout is JSON, exact
        self.assertEqual(json.loads(logged.stdout)["message"], nasty)

    def test_bad_filters_are_one_line_errors(self):
        self.brand("Acme")
        self.sync()
        missing = str(uuid.uuid4())
        for args, message in [
            (("runs", "--brand", "Nope"), "unknown brand 'Nope' (known brands: Acme)"),
            (("jobs", "--brand", "Nope"), "unknown brand 'Nope'"),
            (("health", "--brand", "Nope"), "unknown brand 'Nope'"),
            (("runs", "--type", "fresh_prob"), "unknown job type 'fresh_prob' — did you mean 'fresh_probe'?"),
            (("jobs", "--type", "nothing_like_it"), "unknown job type 'nothing_like_it' (known: "),
            (("health", "--type", "ech"), "unknown job type 'ech'"),
            (("runs", "--status", "done"), "unknown status 'done' (one of: pending, running, completed"),
            (("jobs", "--status", "running"), "unknown status 'running' (one of: active, paused"),
            (("show", missing), f"no run or job with id '{missing}'"),
            (("show", "abc"), "is not a run or job id"),
            (("show", "xyzw1234"), "is not a run or job id"),
            (("runs", "--limit", "0"), "--limit must be a whole number"),
            (("runs", "--param", "novalue"), "--param takes key=value"),
            (("runs", "--brand", "Acme", "--platform"), "give --brand or --platform"),
            (("health", "--bogus"), "unknown option '--bogus'"),
        ]:
            self.assert_one_line_error(self.sluice(*args, check=False), message)

    # -------------------------------------------------------------- rendering

    def test_tables_fit_the_terminal_and_colour_only_on_a_tty(self):
        self.brand("A brand with a rather long name indeed")
        self.run_fg("fresh_probe", "--brand", "A brand with a rather long name indeed",
                    "--params", '{"mode": "partial"}')
        self.run_fg("echo", "--params", json.dumps({"message": "x" * 150}))
        for cols in ("100", "72", "50"):
            env = self.env({"COLUMNS": cols})
            for args in (("runs",), ("health",), ("jobs",), ("types",)):
                out = self.sluice(*args, env=env).stdout
                self.assertNotIn("\x1b[", out)  # not a terminal: no colour
                for line in out.splitlines():
                    if line.startswith(("parameters", "no ")) or re.match(r"^\d+ datasets?:", line):
                        continue
                    self.assertLessEqual(display_width(line), int(cols), f"{args} at {cols}: {line!r}")
                if args == ("runs",):
                    self.assertIn("…", out)  # the 150-character message was cut
        self.assertIn("x" * 150, self.view_json("runs")[0]["parameters"]["message"])  # JSON is whole

        def on_tty(extra):
            env = self.env(extra)
            env["TERM"] = "xterm"
            pid, fd = pty.fork()
            if pid == 0:
                os.execve(harness.pgfixture.sluice_bin(),
                          [harness.pgfixture.sluice_bin(), "health", "--type", "fresh_probe"], env)
            chunks = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 1)
                if not ready:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            os.waitpid(pid, 0)
            os.close(fd)
            return b"".join(chunks).decode()

        coloured = on_tty({})
        self.assertIn("\x1b[1mBRAND", coloured)
        self.assertIn("\x1b[31m", coloured)  # failing in red
        plain = on_tty({"NO_COLOR": "1"})
        self.assertIn("BRAND", plain)
        self.assertNotIn("\x1b[", plain)


if __name__ == "__main__":
    harness.main()
