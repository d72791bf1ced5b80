#!/usr/bin/env python3
"""Operating the daemon: hot reload of handler files (edit, syntax error, add,
remove, SIGHUP, in-flight runs keep their version), the pidfile, log formats, and
the Lua sandbox's limits — each misbehaving handler fails only its own run."""

import json
import os
import re
import shutil
import signal
import tempfile
import urllib.parse

import harness
import pgfixture

VERSION_HANDLER = """
return {
  label = "Versioned",
  params = { seconds = { type = "number", default = 0 }, hold = { type = "integer" } },
  run = function(job)
    sluice.sleep(job.params.seconds)
    if job.params.hold then  -- waits until the test lets go of this advisory lock
      assert(sluice.db.query("SELECT pg_advisory_xact_lock_shared($1)", job.params.hold))
    end
    return { version = %d }
  end,
}
"""

BAD_HANDLERS = {
    "spin": """return { run = function(job) while true do end end }""",
    "spin_pcall": """return { run = function(job)
        for i = 1, 100 do pcall(function() while true do end end) end
        return { swallowed = true }
      end }""",
    "bomb": """return { run = function(job)
        local s = "x"
        for i = 1, 40 do s = s .. s end
        return { len = #s }
      end }""",
    "bomb_pcall": """return { run = function(job)
        local t = {}
        for i = 1, 1000 do
          pcall(function() local s = string.rep("y", 1 << 30) t[#t + 1] = s end)
        end
        return { survived = true }
      end }""",
    # a kill in a spawned task fails its run: the parent cannot catch it either
    "spin_child": """return { run = function(job)
        pcall(sluice.wait, sluice.spawn(function() while true do end end))
        return { swallowed = true }
      end }""",
    "bomb_child": """return { run = function(job)
        local t = {}
        pcall(sluice.wait, sluice.spawn(function()
          for i = 1, 1000 do t[#t + 1] = string.rep("y", 1 << 20) .. i end
        end))
        return { swallowed = #t }
      end }""",
    "global_write": """return { run = function(job) leaked = 1 return {} end }""",
    "global_read": """return { run = function(job) return { v = undefined_name } end }""",
    "escape": """return { run = function(job) return { os = os.execute("true") } end }""",
    "err_table": """return { run = function(job) error({ code = 7 }) end }""",
    "err_nil": """return { run = function(job) error(nil) end }""",
    "fn_result": """return { run = function(job) return { f = function() end } end }""",
    # a table the encoder refuses: why, not "error value table: 0x…"
    "err_deep_table": """return { run = function(job)
        local t = {} local c = t
        for i = 1, 2000 do c[1] = {} c = c[1] end
        error(t) end }""",
    "err_fn_table": """return { run = function(job) error({ f = print }) end }""",
    # a recursion through a library function overflows the C stack inside it:
    # said at the handler's line, not as a bare "C stack overflow"
    "gsub_recursion": """return { run = function(job)
        local function f(s) return (s:gsub(".", f)) end
        return f("abc") end }""",
    # the same caught with pcall and raised again, and a recursion of Lua
    # functions (the Lua stack): said plainly too, not as Lua's bare message
    "pcall_recursion": """return { run = function(job)
        local function f(s) return (s:gsub(".", f)) end
        local ok, err = pcall(f, "abc")
        error(err, 0) end }""",
    "lua_recursion": """return { run = function(job)
        local function f(n) return 1 + f(n + 1) end
        return f(1) end }""",
    # error values whose metamethods raise or never return (the host reads them)
    "err_tostring_raises": """return { run = function(job)
        error(setmetatable({}, { __tostring = function() error("inner") end })) end }""",
    "err_index_raises": """return { run = function(job)
        error(setmetatable({}, { __index = function() error("no such field") end })) end }""",
    "err_tostring_spins": """return { run = function(job)
        error(setmetatable({}, { __tostring = function() while true do end end })) end }""",
    # a __close handler that never returns, run when the timeout cancels the run
    "close_spins": """return { timeout = 1, run = function(job)
        local x <close> = setmetatable({}, { __close = function() while true do end end })
        sluice.sleep(5)
      end }""",
}


# A run that sleeps 50 ms forty times and returns the longest gap it saw
# between two wake-ups: a worker held by one call shows as a long gap.
TICKER = """return { run = function(job)
    local gap, last = 0, sluice.now()
    for i = 1, 40 do
      sluice.sleep(0.05)
      local now = sluice.now()
      if now - last > gap then gap = now - last end
      last = now
    end
    return { max_gap = gap }
  end }"""


class Daemon(harness.SluiceTest):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="sluice-handlers-")
        shutil.copy(os.path.join(harness.EXAMPLES, "echo.lua"), self.dir)

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        tmp = os.path.join(self.dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.dir, name))

    def henv(self, extra=None):
        e = {"SLUICE_HANDLERS": self.dir}
        e.update(extra or {})
        return self.env(e)

    def henv_pool(self, size):
        """henv(), with a config file that sets pool_size."""
        conf = os.path.join(self.dir, f"pool{size}.conf")
        with open(conf, "w") as f:
            f.write(f"pool_size = {size}\n")
        return self.henv({"SLUICE_CONFIG": conf})

    def result_of(self, job):
        return self.one(f"SELECT status, result, handler_version, error_message FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}'")

    def wait_done(self, job, timeout=30):
        self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                      in ("completed", "failed"), timeout, f"job {job} did not finish")

    def serve_until_done(self, jobs, concurrency, env, timeout=60):
        """Serves until each of jobs has finished, then stops the daemon, which
        must exit cleanly (a handler's misdeed must not bring it down)."""
        with self.serve("--concurrency", str(concurrency), env=env) as d:
            for job in jobs:
                self.wait_done(job, timeout=timeout)
            self.assertEqual(d.stop(timeout=30), 0, d.log())

    # -------------------------------------------------------------- hot reload

    def test_edit_reloads_and_in_flight_runs_keep_their_version(self):
        self.write("versioned.lua", VERSION_HANDLER % 1)
        env = self.henv()
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            # the slow run is held until the reload is done and the fast run has
            # run, however slow the machine
            with self.advisory_lock(4243):
                slow = self.sluice("queue", "versioned", "--params", '{"hold": 4243}', env=env).stdout.strip()
                self.wait_for(lambda: self.lock_waiters(4243) == 1, 20, "the slow run did not start")
                self.write("versioned.lua", VERSION_HANDLER % 2)
                d.wait_log("handlers reloaded", timeout=10)
                fast = self.sluice("queue", "versioned", env=env).stdout.strip()
                self.wait_done(fast)
                self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                             f"WHERE scheduled_job_id = '{slow}'"), "running")
            self.wait_done(slow)
        old, new = self.result_of(slow), self.result_of(fast)
        self.assertEqual(old["result"]["version"], 1)
        self.assertEqual(new["result"]["version"], 2)
        self.assertNotEqual(old["handler_version"], new["handler_version"])
        self.assertEqual(self.scalar("SELECT handler_version FROM sluice.job_types WHERE name = 'versioned'"),
                         new["handler_version"])

    def test_broken_edit_keeps_the_previous_version(self):
        self.write("versioned.lua", VERSION_HANDLER % 1)
        env = self.henv()
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            before = self.scalar("SELECT handler_version FROM sluice.job_types WHERE name = 'versioned'")
            self.write("versioned.lua", "return { run = function(job) return { version = 3 } end\n")
            d.wait_log("handler rejected", timeout=10)
            self.assertIn("versioned.lua", d.log())
            job = self.sluice("queue", "versioned", env=env).stdout.strip()
            self.wait_done(job)
            self.assertEqual(self.result_of(job)["result"]["version"], 1)
            self.assertEqual(self.scalar("SELECT handler_version FROM sluice.job_types WHERE name = 'versioned'"),
                             before)
            self.assertEqual(self.scalar("SELECT available FROM sluice.job_types WHERE name = 'versioned'"), "t")

    def test_a_fifo_or_device_named_like_a_handler_is_refused_not_read(self):
        # reading a FIFO blocked the loop for good; /dev/zero never ended
        self.write("versioned.lua", VERSION_HANDLER % 1)
        os.mkfifo(os.path.join(self.dir, "fifo.lua"))
        os.symlink("/dev/zero", os.path.join(self.dir, "zero.lua"))
        with open(os.path.join(self.dir, "huge.lua"), "w") as f:
            f.write("return { run = function(job) end }\n-- " + "x" * (17 << 20) + "\n")
        env = self.henv()
        check = self.sluice("check", env=env, check=False, timeout=30)
        self.assertEqual(check.returncode, 1)
        out = check.stdout + check.stderr
        self.assertIn("fifo.lua: cannot read the file: not a regular file", out)
        self.assertIn("zero.lua: cannot read the file: not a regular file", out)
        self.assertIn("huge.lua: cannot read the file: larger than 16 MiB", out)
        os.unlink(os.path.join(self.dir, "fifo.lua"))
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            os.mkfifo(os.path.join(self.dir, "late.lua"))  # a reload reads the directory again
            d.wait_log("late.lua: cannot read the file: not a regular file", timeout=10)
            job = self.sluice("queue", "versioned", env=env).stdout.strip()
            self.wait_done(job)
        self.assertEqual(self.result_of(job)["result"]["version"], 1)

    def test_a_handler_directory_gone_at_a_reload_keeps_its_types(self):
        # the log said the previous versions keep serving, but every type of
        # the directory was dropped: its queued jobs failed as unknown types
        self.write("versioned.lua", VERSION_HANDLER % 1)
        env = self.henv()
        away = self.dir + ".away"
        with self.serve("--no-watch", env=env) as d:
            d.wait_log("sluice serving")
            os.rename(self.dir, away)
            try:
                d.signal(signal.SIGHUP)
                d.wait_log("cannot open the handler directory", timeout=10)
                d.wait_log("handlers reloaded with problems", timeout=10)
                self.assertEqual(self.scalar("SELECT available FROM sluice.job_types WHERE name = 'versioned'"),
                                 "t")
                job = self.scalar("SELECT sluice.queue_one_time_job(NULL, 'versioned', '{}')")
                self.wait_done(job)
            finally:
                os.rename(away, self.dir)
        self.assertEqual(self.result_of(job)["status"], "completed")
        self.assertEqual(self.result_of(job)["result"]["version"], 1)

    def test_a_handler_directory_missing_at_start_up_changes_no_type(self):
        # its types are unknown to a daemon that never read it, and its start-up
        # (and each reload) marked every type it did not know unavailable, for
        # every client: SQL could queue none of them
        env = self.henv()
        self.sluice("queue", "echo", "--at", "2099-01-01T00:00:00Z", env=env)  # the registry
        self.assertEqual(self.scalar("SELECT available FROM sluice.job_types WHERE name = 'echo'"), "t")
        missing = self.dir + ".missing"
        with self.serve("--no-watch", env=self.henv({"SLUICE_HANDLERS": f"{missing}:{harness.TEST_HANDLERS}"})) as d:
            d.wait_log("sluice serving")
            self.assertIn("cannot open the handler directory", d.log())
            # the reload's sync is asynchronous: it is held on the lock every
            # registry sync takes until seen waiting, then let go and waited for
            sync = int(self.scalar("SELECT hashtext('sluice.sync_registry')"))
            with self.advisory_lock(sync):
                d.signal(signal.SIGHUP)
                d.wait_log("handlers reloaded with problems", timeout=10)
                self.wait_for(lambda: self.lock_waiters(sync) == 1, 10, "the reload's registry sync never ran")
            self.wait_for(lambda: self.lock_waiters(sync) + self.lock_waiters(sync, granted=True) == 0, 10,
                          "the reload's registry sync did not end")
        self.assertEqual(self.scalar("SELECT available FROM sluice.job_types WHERE name = 'echo'"), "t")
        self.assertEqual(self.scalar("SELECT available FROM sluice.job_types WHERE name = 'sql_probe'"), "t")
        self.assertRegex(self.scalar("SELECT sluice.queue_one_time_job(NULL, 'echo', '{}')"), r"^[0-9a-f-]{36}$")

    def test_added_and_removed_files_and_sighup(self):
        env = self.henv()
        with self.serve("--no-watch", env=env) as d:
            d.wait_log("sluice serving")
            # a daemon that watches the directory shows when the new file has
            # been seen: by then the one with --no-watch would have reloaded too
            with self.serve(env=env) as watcher:
                watcher.wait_log("sluice serving")
                self.write("versioned.lua", VERSION_HANDLER % 7)
                watcher.wait_log("handlers reloaded", timeout=10)
            self.assertNotIn("handlers reloaded", d.log())  # --no-watch
            d.signal(signal.SIGHUP)
            d.wait_log("handlers reloaded", timeout=10)
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM sluice.job_types "
                                              "WHERE name = 'versioned' AND available") == "1", 10)
            job = self.sluice("queue", "versioned", env=env).stdout.strip()
            self.wait_done(job)
            self.assertEqual(self.result_of(job)["result"]["version"], 7)
            os.unlink(os.path.join(self.dir, "versioned.lua"))
            d.signal(signal.SIGHUP)
            self.wait_for(lambda: self.scalar("SELECT available FROM sluice.job_types "
                                              "WHERE name = 'versioned'") == "f", 10)

    def test_an_edit_and_a_reload_asked_for_while_start_up_waits_are_taken(self):
        # the files were read before start-up waited for the database, and
        # watched only once the daemon served: a file written meanwhile was
        # not seen, and a SIGHUP meanwhile ended the daemon (its default action)
        socket_dir = urllib.parse.parse_qs(urllib.parse.urlsplit(self.db).query)["host"][0]
        with tempfile.TemporaryDirectory(prefix="sluice-later-") as later:
            env = self.henv({"DATABASE_URL": self.db.replace(socket_dir, later)})
            with self.serve(env=env) as d:
                d.wait_log("start-up failed; retrying in 2s")
                self.write("versioned.lua", VERSION_HANDLER % 3)
                d.signal(signal.SIGHUP)
                # the database "comes up": its socket appears where the daemon looks
                for name in os.listdir(socket_dir):
                    if name.startswith(".s.PGSQL.") and not name.endswith(".lock"):
                        os.symlink(os.path.join(socket_dir, name), os.path.join(later, name))
                d.wait_log("sluice serving", timeout=30)
                d.wait_log("SIGHUP: reloading handlers", timeout=10)
                self.wait_for(lambda: self.scalar("SELECT count(*) FROM sluice.job_types "
                                                  "WHERE name = 'versioned' AND available") == "1", 10)
                job = self.sluice("queue", "versioned", env=env).stdout.strip()
                self.wait_done(job)
                self.assertEqual(self.result_of(job)["result"]["version"], 3)

    def test_a_start_up_that_waited_for_the_database_reports_no_outage_once_serving(self):
        # the loop's clock stood still while start-up waited, so the first
        # connections the pool opened once serving counted their
        # connect_timeout from before the wait: given up at once ("cannot
        # connect to the database … timeout expired"), and "back" 0 s later
        socket_dir = urllib.parse.parse_qs(urllib.parse.urlsplit(self.db).query)["host"][0]
        with tempfile.TemporaryDirectory(prefix="sluice-later-") as later:
            env = self.henv({"DATABASE_URL": self.db.replace(socket_dir, later) + "&connect_timeout=2"})
            with self.serve(env=env) as d:
                d.wait_log("start-up failed; retrying in 2s")  # 1 s waited, 2 s more to come
                for name in os.listdir(socket_dir):
                    if name.startswith(".s.PGSQL.") and not name.endswith(".lock"):
                        os.symlink(os.path.join(socket_dir, name), os.path.join(later, name))
                d.wait_log("sluice serving", timeout=30)
                self.wait_listening()
                job = self.sluice("queue", "echo", env=env).stdout.strip()
                self.wait_done(job)
            served = d.log()[d.log().index("sluice serving"):]
            self.assertNotIn("cannot connect to the database", served)
            self.assertNotIn("database connection back", served)

    def test_a_schema_a_newer_sluice_migrated_is_served_with_a_warning(self):
        # a migration recorded that this build does not have went unsaid: the
        # daemon served as if the schema were its own
        env = self.henv()
        self.sluice("migrate", env=env)
        self.scalar("INSERT INTO sluice.schema_migrations (version, name, checksum) "
                    "VALUES ('9990', '9990_from_a_newer_sluice.sql', 'x')")
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            job = self.sluice("queue", "echo", env=env).stdout.strip()
            self.wait_done(job)
        line = next((x for x in d.log().splitlines() if "schema is newer than this sluice" in x), "")
        self.assertIn("level=warn", line, d.log())
        self.assertIn("migrations=9990_from_a_newer_sluice.sql", line)
        proc = self.sluice("migrate", env=env)
        self.assertIn("schema is up to date", proc.stdout)
        self.assertIn("this build does not have (9990_from_a_newer_sluice.sql)", proc.stderr)
        self.assertNotIn("newer", self.sluice("jobs", env=env).stderr)  # other commands say nothing

    def test_a_role_without_privileges_on_the_schema_is_told_which_and_served_once_granted(self):
        # a role without USAGE on schema sluice was told "cannot create
        # sluice.schema_migrations: permission denied for database": the
        # runner took the schema for missing and tried to create it
        role = f"sluice_noprivs_{os.getpid()}"
        self.scalar(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN")
        try:
            self.sluice("migrate")
            env = self.henv({"DATABASE_URL": self.db.replace("postgres@", f"{role}@", 1)})
            proc = self.sluice("jobs", env=env, check=False)
            self.assertEqual(proc.returncode, 1, proc.stderr)
            self.assertIn("permission denied for schema sluice", proc.stderr)
            self.assertIn(f'the role "{role}" lacks privileges on sluice\'s schema', proc.stderr)
            with self.serve(env=env) as d:
                d.wait_log("start-up failed; retrying")
                self.assertIn(f'the role \\"{role}\\" lacks privileges', d.log())
                # granted as docs/database.md says: served without a restart
                self.scalar(f"GRANT USAGE ON SCHEMA sluice TO {role}; "
                            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sluice TO {role}; "
                            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA sluice TO {role}")
                d.wait_log("sluice serving", timeout=60)
                job = self.sluice("queue", "echo", env=env).stdout.strip()
                self.wait_done(job)
        finally:
            self.scalar(f"DROP OWNED BY {role}; DROP ROLE {role}")

    # -------------------------------------------------------------- operations

    def test_pidfile_refuses_a_second_daemon(self):
        pidfile = os.path.join(self.dir, "sluice.pid")
        with self.serve("--pidfile", pidfile, env=self.henv()) as d:
            d.wait_log("sluice serving")
            with open(pidfile) as f:
                self.assertEqual(int(f.read()), d.proc.pid)
            second = self.sluice("serve", "--pidfile", pidfile, env=self.henv(), check=False, timeout=30)
            self.assertEqual(second.returncode, 1)
            self.assertIn("refusing to start a second one", second.stderr)
            self.assertIn(str(d.proc.pid), second.stderr)
        self.assertFalse(os.path.exists(pidfile))

    def test_a_daemon_without_job_types_does_not_serve(self):
        # a handler directory named wrong, not yet deployed or empty: the daemon
        # served with no job types, claimed every due job and failed it as of
        # an unknown type, until its attempts were spent
        job = self.sluice("queue", "echo", env=self.henv()).stdout.strip()
        empty = tempfile.mkdtemp(prefix="sluice-empty-")
        try:
            for dirs, why in ((self.dir + ".missing", "a handler directory cannot be read"),
                              (empty, "`sluice check` says why")):
                proc = self.sluice("serve", env=self.henv({"SLUICE_HANDLERS": dirs}), check=False, timeout=20)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(f"serve: no job types loaded from {dirs} ({why}); not serving", proc.stderr)
        finally:
            shutil.rmtree(empty)
        self.assertEqual(self.one(f"SELECT status, attempts FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"status": "active", "attempts": 0})
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 0)

    def test_json_logs_with_run_fields_and_no_secrets(self):
        env = self.henv({"SLUICE_LOG_FORMAT": "json"})
        job = self.sluice("queue", "echo", "--params",
                          '{"message": "Authorization: Bearer sekrit-token-123"}', env=env).stdout.strip()
        with self.serve(env=env) as d:
            self.wait_done(job)
        lines = [json.loads(l) for l in d.log().splitlines() if l.startswith("{")]
        self.assertTrue(lines)
        for l in lines:
            self.assertIn("ts", l)
            self.assertIn(l["level"], ("debug", "info", "warn", "error"))
        run_lines = [l for l in lines if l.get("run")]
        self.assertTrue(run_lines)
        self.assertTrue(all(l.get("type") == "echo" for l in run_lines))
        self.assertNotIn("sekrit-token-123", d.log())

    def test_json_logs_type_numbers_and_booleans_by_field(self):
        # every value was a string ("seconds":"0.012"): numbers and yes/no are
        # typed by their field, so `jq 'select(.seconds > 1)'` works, while a
        # message or an id stays a string whatever its text
        env = self.henv({"SLUICE_LOG_FORMAT": "json", "SLUICE_LOG_LEVEL": "debug"})
        job = self.sluice("queue", "echo", "--params", '{"message": "123", "fail": true, "permanent": true}',
                          env=env).stdout.strip()
        with self.serve(env=env) as d:
            self.wait_done(job)
        lines = [json.loads(l) for l in d.log().splitlines() if l.startswith("{")]

        def line(msg):
            found = [l for l in lines if l["msg"] == msg]
            self.assertEqual(len(found), 1, f"{msg!r} in {d.log()}")
            return found[0]

        serving = line("sluice serving")
        self.assertIs(type(serving["concurrency"]), int)
        self.assertIsInstance(serving["worker"], str)
        failed = line("run failed")
        self.assertIs(type(failed["seconds"]), float)
        self.assertGreaterEqual(failed["seconds"], 0)
        self.assertIsInstance(failed["run"], str)
        self.assertEqual(line("echo: 123")["type"], "echo")
        stopping = line("stopping: no new claims; no run in flight")
        self.assertIs(stopping["running"], False)
        self.assertIs(type(stopping["grace_seconds"]), int)
        for l in lines:  # nothing else is typed
            for k, v in l.items():
                if k not in ("concurrency", "seconds", "running", "grace_seconds"):
                    self.assertIsInstance(v, str, f"{k} in {l}")

    def test_logfmt_default(self):
        with self.serve(env=self.henv()) as d:
            d.wait_log("sluice serving")
        first = d.log().splitlines()[0]
        self.assertRegex(first, r'^ts=\S+ level=info msg=')

    def test_config_precedence_and_masking(self):
        conf = os.path.join(self.dir, "sluice.conf")
        with open(conf, "w") as f:
            f.write("# a comment\nconcurrency = 7\nlease_seconds = 45\n"
                    "db = postgresql://app:hunter2@db.example/prod\nlog_format = json\n")
        env = self.henv({"SLUICE_CONFIG": conf, "SLUICE_LEASE_SECONDS": "30"})
        env.pop("DATABASE_URL")
        out = json.loads(self.sluice("config", "--json", env=env).stdout)
        self.assertEqual(out["config_file"], conf)
        self.assertEqual(out["concurrency"], "7")          # file
        self.assertEqual(out["lease_seconds"], "30")       # environment beats file
        self.assertEqual(out["log_format"], "json")
        self.assertNotIn("hunter2", json.dumps(out))
        # every setting, each once, in the order the text form lists them
        self.assertEqual(list(out), ["config_file", "db", "home", "handlers", "lua", "concurrency",
                                     "pool_size", "lease_seconds", "grace_seconds", "poll_seconds",
                                     "archive_after_days", "prune_after_days", "retention_every_minutes",
                                     "memory_limit_mb", "instruction_budget", "log_format", "log_level",
                                     "http_limit"])
        text = self.sluice("config", env=env).stdout
        self.assertEqual([line.split()[0] for line in text.splitlines()], list(out)[:-1])
        self.assertIn("\nretention_every_minutes  10\n", text)
        self.assertIn("app:[redacted]@db.example", out["db"])
        flags = json.loads(self.sluice("--handlers", "/tmp", "--log-format", "logfmt", "config", "--json",
                                       env=env).stdout)
        self.assertEqual(flags["handlers"], "/tmp")        # flags beat both
        self.assertEqual(flags["log_format"], "logfmt")
        with open(conf, "a") as f:
            f.write("concurency = 3\n")
        bad = self.sluice("config", env=env, check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown setting 'concurency' — did you mean 'concurrency'?", bad.stderr)
        self.assertIn(f"{conf}:6", bad.stderr)
        # a setting spelt as its flag is, or nothing near a setting at all
        for line, message in (("lease = 3", "unknown setting 'lease' — did you mean 'lease_seconds'?"),
                              ("prefetch = 3", "unknown setting 'prefetch'\n")):
            with open(conf, "w") as f:
                f.write(line + "\n")
            bad = self.sluice("config", env=env, check=False)
            self.assertEqual(bad.returncode, 2)
            self.assertIn(f"{conf}:1: {message}", bad.stderr)

    def test_config_shows_http_limits(self):
        # `sluice config` left the file's http_limit lines out of "the settings in effect"
        conf = os.path.join(self.dir, "limits.conf")
        with open(conf, "w") as f:
            f.write("http_limit = graph.facebook.com 200/1h concurrency=10\n"
                    "http_limit = llm concurrency=4   # a key\n")
        env = self.henv({"SLUICE_CONFIG": conf})
        env.pop("DATABASE_URL")
        out = json.loads(self.sluice("config", "--json", env=env).stdout)
        self.assertEqual(out["http_limit"], ["graph.facebook.com 200/1h concurrency=10", "llm concurrency=4"])
        text = self.sluice("config", env=env).stdout
        self.assertRegex(text, r"(?m)^http_limit +graph\.facebook\.com 200/1h concurrency=10\nhttp_limit +llm concurrency=4$")
        os.unlink(conf)
        self.assertEqual(json.loads(self.sluice("config", "--json", env=self.henv({"SLUICE_CONFIG": ""})).stdout)
                         ["http_limit"], [])

    def test_numeric_settings_are_finite_and_bounded(self):
        conf = os.path.join(self.dir, "bounds.conf")
        env = self.henv({"SLUICE_CONFIG": conf})
        env.pop("DATABASE_URL")

        def refused(proc, source, key, value, bounds):
            self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
            self.assertIn(f"sluice: error: {source}: bad value for {key}: '{value}' ({bounds})", proc.stderr)

        # the file, with its line
        for line, key, value, bounds in (
                ("lease_seconds = inf", "lease_seconds", "inf", "a number from 1 to 86400 seconds"),
                ("poll_seconds = 1e-9", "poll_seconds", "1e-9", "a number from 0.1 to 3600 seconds"),
                ("archive_after_days = 1000000", "archive_after_days", "1000000",
                 "a number from 0.01 to 36500 days"),
                ("retention_every_minutes = 0", "retention_every_minutes", "0",
                 "a number from 0.01 to 10080 minutes"),
                ("concurrency = 2.5", "concurrency", "2.5", "a whole number from 1 to 10000"),
                ("memory_limit_mb = nan", "memory_limit_mb", "nan", "a whole number from 16 to 65536 MB")):
            with open(conf, "w") as f:
                f.write(f"# bounds\n{line}\n")
            refused(self.sluice("config", env=env, check=False), f"{conf}:2", key, value, bounds)
        with open(conf, "w") as f:
            f.write("")
        # the environment
        for var, key, value in (("SLUICE_LEASE_SECONDS", "lease_seconds", "nan"),
                                ("SLUICE_GRACE_SECONDS", "grace_seconds", "-1"),
                                ("SLUICE_CONCURRENCY", "concurrency", "0x10")):
            proc = self.sluice("config", env=dict(env, **{var: value}), check=False)
            self.assertEqual(proc.returncode, 2)
            self.assertIn(f"{var}: bad value for {key}: '{value}'", proc.stderr)
        # serve's flags: refused before anything starts (nan aborted in libev, inf
        # retried for ever, 0.000001 grew without bound)
        for flag, value, key in (("--lease", "nan", "lease_seconds"), ("--lease", "inf", "lease_seconds"),
                                 ("--lease", "0.000001", "lease_seconds"), ("--poll", "1e-9", "poll_seconds"),
                                 ("--grace", "1e300", "grace_seconds"), ("--concurrency", "nan", "concurrency"),
                                 ("-c", "1e5", "concurrency")):
            proc = self.sluice("serve", flag, value, env=env, check=False, timeout=20)
            self.assertEqual(proc.returncode, 2, f"{flag} {value}: {proc.stderr}")
            self.assertIn(f"sluice: error: {flag}: bad value for {key}: '{value}'", proc.stderr)
        proc = self.sluice("serve", "--lease", env=env, check=False, timeout=20)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("serve: --lease needs a value", proc.stderr)
        # large values within bounds are printed without an exponent
        with open(conf, "w") as f:
            f.write("archive_after_days = 36500\nlease_seconds = 1.5\ninstruction_budget = 1e9\n")
        out = json.loads(self.sluice("config", "--json", env=env).stdout)
        self.assertEqual((out["archive_after_days"], out["lease_seconds"], out["instruction_budget"]),
                         ("36500", "1.5", "1000000000"))

    def test_a_bad_log_format_or_level_names_the_values_it_takes(self):
        # from the environment or the file the error said only "bad value for
        # log_format: 'xml'", where the flag lists what it takes
        conf = os.path.join(self.dir, "log.conf")
        with open(conf, "w") as f:
            f.write("log_level = trace\n")
        env = self.henv()
        env.pop("DATABASE_URL")
        proc = self.sluice("config", env=dict(env, SLUICE_LOG_FORMAT="xml"), check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("SLUICE_LOG_FORMAT: bad value for log_format: 'xml' (logfmt or json)", proc.stderr)
        proc = self.sluice("config", env=dict(env, SLUICE_CONFIG=conf), check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn(f"{conf}:1: bad value for log_level: 'trace' (debug, info, warn or error)", proc.stderr)

    def test_an_empty_db_or_home_in_the_file_is_refused(self):
        # `db =` was an empty connection string, libpq's defaults: whatever
        # server they reach, not the embedded cluster
        conf = os.path.join(self.dir, "empty.conf")
        env = self.henv({"SLUICE_CONFIG": conf})
        env.pop("DATABASE_URL")
        for key in ("db", "home"):
            with open(conf, "w") as f:
                f.write(f"# {key}\n{key} = \n")
            proc = self.sluice("queue", "echo", env=env, check=False)
            self.assertEqual((proc.returncode, proc.stdout), (2, ""), proc.stderr)
            self.assertIn(f"sluice: error: {conf}:2: {key} needs a value (leave it out for the default)",
                          proc.stderr)

    def test_pool_connections_hold_the_prepared_statements(self):
        shutil.copy(os.path.join(harness.TEST_HANDLERS, "sql_probe.lua"), self.dir)
        env = self.henv()
        probe = json.dumps({"sql": "SELECT name FROM pg_prepared_statements ORDER BY name"})
        with self.serve("--concurrency", "4", env=env):
            self.wait_listening()
            # a cycle that ran a job, then one that found nothing more due
            self.wait_done(self.sluice("queue", "echo", env=env).stdout.strip())
            jobs = [self.sluice("queue", "sql_probe", "--params", probe, env=env).stdout.strip()
                    for _ in range(4)]
            for job in jobs:
                self.wait_done(job)
        # whichever pool connection a handler's query used has them, ready to execute
        for job in jobs:
            res = self.result_of(job)
            self.assertEqual(res["status"], "completed", res)
            names = [r["name"] for r in res["result"]["rows"]]
            self.assertIn("sl_cycle", names)
            self.assertIn("sl_next_due", names)

    def test_a_nul_in_a_query_or_its_parameters_is_refused_not_cut(self):
        # libpq takes a NUL as the end of a string: the text after it was
        # silently dropped, and "ab\0cd" stored as "ab"
        script = r"""
local _, e1, s1 = sluice.db.query("SELECT $1::text AS v", "ab\0cd")
local _, e2, s2 = sluice.db.query("SELECT 1 AS one\0 junk")
assert(sluice.db.query("CREATE TABLE sluice.nul_probe (a text)"))
local _, e3, s3 = sluice.db.transaction(function()
  assert(sluice.db.query("INSERT INTO sluice.nul_probe VALUES ('kept?')"))
  sluice.db.query("INSERT INTO sluice.nul_probe VALUES ($1)", "x\0y")
  return true
end)
local n = sluice.db.query("SELECT count(*) AS n FROM sluice.nul_probe")[1].n
print(s1, s2, s3, n)
print(e1)
print(e2)
print(e3)
"""
        out = self.sluice("exec", "-", input=script).stdout.split("\n")
        self.assertEqual(out[0].split("\t"), ["22021", "22021", "22021", "0"])
        nul = "sluice.db.query: parameter 1 holds a NUL byte, which Postgres text cannot store"
        self.assertEqual(out[1:4], [nul, "sluice.db.query: the query holds a NUL byte",
                                    "the transaction was rolled back because a statement in it failed: " + nul])

    def test_a_handler_that_deallocates_statements_does_not_stop_the_worker(self):
        # the pool's named statements were taken as prepared on a connection
        # for as long as it stayed open: after a handler's DEALLOCATE ALL there,
        # every statement of the worker's sent to it failed (26000) for good
        self.write("dealloc.lua", """return { run = function(job)
            return { done = (assert(sluice.db.query("DEALLOCATE ALL"))) ~= nil }
          end }""")
        env = self.henv_pool(1)
        with self.serve("--concurrency", "1", env=env):
            job = self.sluice("queue", "dealloc", "--max-retries", "0", env=env).stdout.strip()
            self.wait_done(job)
            echo = self.sluice("queue", "echo", "--max-retries", "0", env=env).stdout.strip()
            self.wait_done(echo)
        self.assertEqual(self.result_of(job)["status"], "completed")
        self.assertEqual(self.result_of(echo)["status"], "completed")

    def test_a_connection_held_by_a_transaction_prepares_after_it(self):
        # one pool connection, held by a handler's transaction when the worker
        # first flushes run logs (every 2 s): it prepares that statement once
        # released. The transaction waits for a lock the test holds until 2.5 s
        # after the run logged, so a flush falls inside it however slow the start
        shutil.copy(os.path.join(harness.TEST_HANDLERS, "sql_probe.lua"), self.dir)
        self.write("tx_hold.lua", """return { run = function(job)
            job.log("holding the connection")
            assert(sluice.db.transaction(function()
              assert(sluice.db.query("SELECT pg_advisory_xact_lock_shared(4545)"))
              return true
            end))
            return { held = true } end }""")
        env = self.henv_pool(1)
        probe = json.dumps({"sql": "SELECT name FROM pg_prepared_statements ORDER BY name"})
        with self.serve(env=env):
            with self.advisory_lock(4545):
                hold = self.sluice("queue", "tx_hold", env=env).stdout.strip()
                self.wait_for(lambda: self.lock_waiters(4545) == 1, 30, "the transaction did not start")
                self.wait_for(lambda: float(self.scalar(
                    f"SELECT extract(epoch FROM clock_timestamp() - started_at) FROM sluice.scheduled_job_runs "
                    f"WHERE scheduled_job_id = '{hold}'")) > 2.5, 30)
                self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{hold}'"),
                                 "active")  # still held
            self.wait_done(hold)
            job = self.sluice("queue", "sql_probe", "--params", probe, env=env).stdout.strip()
            self.wait_done(job)
        self.assertEqual(self.result_of(hold)["status"], "completed")
        names = [r["name"] for r in self.result_of(job)["result"]["rows"]]
        self.assertIn("sl_logs", names)
        self.assertIn("sl_cycle", names)

    def test_config_file_follows_home_and_config_flags(self):
        home = tempfile.mkdtemp(prefix="sluice-home-", dir=self.dir)
        with open(os.path.join(home, "sluice.conf"), "w") as f:
            f.write("concurrency = 7\n")
        other = os.path.join(self.dir, "other.conf")
        with open(other, "w") as f:
            f.write("concurrency = 3\n")
        env = self.henv()
        env.pop("SLUICE_CONFIG", None)
        env.pop("SLUICE_HOME", None)

        def config(*args, extra=None):
            e = dict(env, **(extra or {}))
            return json.loads(self.sluice(*args, "config", "--json", env=e).stdout)

        # --home names the state directory, and so the file in it (in either spelling)
        for args in (("--home", home), (f"--home={home}",)):
            out = config(*args)
            self.assertEqual(out["config_file"], os.path.join(home, "sluice.conf"), args)
            self.assertEqual(out["concurrency"], "7", args)
        # the flag beats the environment's home
        out = config("--home", home, extra={"SLUICE_HOME": self.dir})
        self.assertEqual(out["config_file"], os.path.join(home, "sluice.conf"))
        # --config beats both, in either spelling
        for args in (("--home", home, "--config", other), (f"--config={other}",)):
            out = config(*args)
            self.assertEqual(out["config_file"], other, args)
            self.assertEqual(out["concurrency"], "3", args)

    def test_jobs_of_a_type_without_handler_wait_for_a_worker_that_has_it(self):
        # a worker claims only the types it has handlers for: the jobs of another
        # type stay due and untouched until a worker has its handler (here the
        # same one, once the file is back and reloaded)
        self.write("ghost.lua", VERSION_HANDLER % 1)
        self.write("present.lua", VERSION_HANDLER % 1)
        env = self.henv()
        once = self.sluice("queue", "ghost", "--max-retries", "0", env=env).stdout.strip()
        rec = self.sluice("schedule", "ghost", "--cron", "*/5 * * * *", env=env).stdout.split()[-1]
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{rec}' RETURNING 1")
        os.remove(os.path.join(self.dir, "ghost.lua"))  # this worker cannot run them
        with self.serve(env=env) as d:
            # the claims that took these (queued after the ghost jobs) would have taken them too
            for _ in range(2):
                self.wait_done(self.sluice("queue", "present", env=env).stdout.strip())
            for job in (once, rec):
                self.assertEqual(self.one(f"SELECT status, attempts, current_run_id, next_run_at <= now() AS due "
                                          f"FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                                 {"status": "active", "attempts": 0, "current_run_id": None, "due": True})
            self.assertEqual(self.count("sluice.scheduled_job_runs", f"job_type = 'ghost'"), 0)
            self.assertNotIn("unknown job type", d.log())
            self.write("ghost.lua", VERSION_HANDLER % 2)  # the watcher reloads it
            self.wait_done(once)
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"scheduled_job_id = '{rec}' AND status = 'completed'") == 1)
        self.assertEqual(self.result_of(once)["result"], {"version": 2})
        # its next slot is after its run ended (not after now: a slot may have
        # come since, with the daemon stopped)
        job = self.one(f"SELECT status, attempts, current_run_id, next_run_at > (SELECT max(completed_at) "
                       f"FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{rec}') AS later, "
                       f"extract(minute FROM next_run_at)::int % 5 AS off_slot "
                       f"FROM sluice.scheduled_jobs WHERE id = '{rec}'")
        self.assertEqual(job, {"status": "active", "attempts": 0, "current_run_id": None, "later": True,
                               "off_slot": 0})

    def claim_while_the_handler_goes(self, d, env):
        """Queues a job of type doomed and has daemon d claim it while its
        handler file goes: the claim is held in the database (a trigger on the
        run's insert waits for a lock the test holds) while the file is removed
        and the removal reloaded. Returns the job id."""
        self.scalar("""CREATE OR REPLACE FUNCTION public.hold_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.job_type = 'doomed' THEN PERFORM pg_advisory_xact_lock_shared(4343); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER hold_claim BEFORE INSERT ON sluice.scheduled_job_runs
                FOR EACH ROW EXECUTE FUNCTION public.hold_claim()""")
        with self.advisory_lock(4343):
            job = self.sluice("queue", "doomed", env=env).stdout.strip()
            self.wait_for(lambda: self.lock_waiters(4343) == 1, 30, "the claim did not reach the run's insert")
            os.remove(os.path.join(self.dir, "doomed.lua"))
            self.wait_for(lambda: any("handlers reloaded" in l and "doomed" not in l
                                      for l in d.log().splitlines()), 10, "the removal was not reloaded")
        return job

    def test_a_handler_removed_between_claim_and_start_gives_the_run_back(self):
        # the one way to "unknown job type … no x.lua": the worker claimed the
        # job while it had the handler, and the file went before the run
        # started. The run never ran: it is given back as if never claimed, no
        # attempt spent (with max_retries 0 it failed the job for good), and
        # the job waits for a worker with the handler
        self.write("doomed.lua", "return { max_retries = 0, run = function(job) return { ok = true } end }\n")
        self.write("kept.lua", "return { run = function(job) return { kept = true } end }\n")
        env = self.henv()
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            job = self.claim_while_the_handler_goes(d, env)
            # the claim answers with a run of a type the worker no longer has
            d.wait_log('msg="no handler for its type here; run given back"')
            line = next(l for l in d.log().splitlines() if "run given back" in l)
            run = re.search(r" run=(\S+)", line).group(1)
            self.assertIn(" type=doomed ", line)
            self.assertIn('then="due again at once, no attempt spent"', line)
            self.assertNotIn("cannot start run", d.log())
            # gone as if never claimed: no run, no attempt, the job due at once
            self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 0)
            self.assertEqual(self.one(f"SELECT status, attempts, run_count, current_run_id, last_error, "
                                      f"next_run_at <= now() AS due FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                             {"status": "active", "attempts": 0, "run_count": 0, "current_run_id": None,
                              "last_error": None, "due": True})
            # and this worker, which no longer claims the type, leaves it due:
            # a job it has the handler for runs meanwhile, the doomed one stays
            # unclaimed (no claim and give-back over and over)
            kept = self.sluice("queue", "kept", env=env).stdout.strip()
            self.wait_done(kept)
            self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{kept}'"), "completed")
            self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 0)
            self.assertEqual(d.log().count("run given back"), 1)
            self.scalar("DROP TRIGGER hold_claim ON sluice.scheduled_job_runs")
            # once a worker has the handler again, it runs: its first attempt
            self.write("doomed.lua", "return { max_retries = 0, run = function(job) return { back = true } end }\n")
            self.wait_done(job)
        runs = self.sql(f"SELECT id::text, status, result, attempt_number FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}'")
        self.assertEqual([(r["status"], r["result"], r["attempt_number"]) for r in runs],
                         [("completed", {"back": True}, 1)])
        self.assertNotEqual(runs[0]["id"], run)
        self.assertEqual(self.one(f"SELECT status, run_count FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"status": "completed", "run_count": 1})

    def test_a_give_back_the_database_refuses_is_recorded_as_a_failure(self):
        # a trigger of the deployment's (here: the test's) refuses to delete
        # the run: the give-back is refused alone, and the run is recorded as
        # the failed attempt it was before give-backs, its job's policy applies
        self.write("doomed.lua", "return { max_retries = 0, run = function(job) return { ok = true } end }\n")
        env = self.henv()
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            self.scalar("""CREATE FUNCTION public.keep_runs() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'runs are kept'; END $$;
                CREATE TRIGGER keep_runs BEFORE DELETE ON sluice.scheduled_job_runs
                    FOR EACH ROW EXECUTE FUNCTION public.keep_runs()""")
            job = self.claim_while_the_handler_goes(d, env)
            self.wait_done(job)
            line = next(l for l in d.log().splitlines()
                        if 'msg="the database refused to give back a run; recording it as failed"' in l)
        self.assertIn(" type=doomed ", line)
        self.assertIn("runs are kept", line)
        self.assertNotIn("run given back", d.log())
        run = self.one(f"SELECT id::text, status, error_message, attempt_number FROM sluice.scheduled_job_runs "
                       f"WHERE scheduled_job_id = '{job}'")
        self.assertIn(f"run={run['id']} ", line)
        self.assertEqual((run["status"], run["attempt_number"]), ("failed", 1))
        self.assertTrue(run["error_message"].startswith("unknown job type 'doomed'"), run)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "failed")

    def test_a_role_a_handler_sets_does_not_reach_the_daemons_statements(self):
        # the role stayed on the pooled connection, and the daemon's own
        # statements sent there next ran as a role with no rights on its
        # schema: every run's end failed to record until that connection was
        # lost; a statement a handler prepared was there for the next run's
        # PREPARE to fail on. Each handler's statement now leaves its session
        # as it found it, and the daemon's own prepared statements prepared.
        # roles are the cluster's, which test files running beside this one share
        role = f"session_probe_daemon_{os.getpid()}"
        pgfixture.psql(self.db, f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role}")
        self.addCleanup(pgfixture.psql, self.db, f"DROP ROLE IF EXISTS {role}")
        self.write("setrole.lua", 'return { run = function(job)\n'
                   '  local pool = assert(sluice.db.query(\n'
                   '    "SELECT count(*) AS n FROM pg_prepared_statements"))[1].n\n'
                   '  assert(sluice.db.query("PREPARE handler_probe AS SELECT 1"))\n'
                   f'  assert(sluice.db.query("SET ROLE {role}"))\n'
                   '  local who = assert(sluice.db.query("SELECT current_user AS u"))[1].u\n'
                   '  return { who = who, pool = pool }\n'
                   'end }\n')
        env = self.henv_pool(2)  # one for the daemon alone, one it shares with handlers
        with self.serve("--concurrency", "2", env=env) as d:
            d.wait_log("sluice serving")
            for i in range(6):
                self.sluice("queue", "setrole", env=env)
                self.sluice("queue", "echo", "--params", json.dumps({"message": f"m{i}"}), env=env)
            runs_sql = ("SELECT j.job_type, r.status, r.result->>'who' AS who, r.result->>'pool' AS pool, "
                        "r.error_message FROM sluice.scheduled_job_runs r JOIN sluice.scheduled_jobs j "
                        "ON j.id = r.scheduled_job_id")
            try:
                self.wait_jobs_done(12, timeout=60)
            except AssertionError as e:  # what the runs said, and the daemon, say why
                raise AssertionError(f"{e}\n{self.sql(runs_sql)}\n{d.log()}") from None
        runs = self.sql(runs_sql)
        self.assertEqual(len(runs), 12, f"{runs}\n{d.log()}")
        self.assertEqual({(r["status"], r["who"]) for r in runs if r["job_type"] == "setrole"},
                         {("completed", "postgres")}, d.log())
        self.assertEqual({r["status"] for r in runs if r["job_type"] == "echo"}, {"completed"}, d.log())
        # the daemon's own statements, prepared again after each DEALLOCATE ALL
        pools = {r["pool"] for r in runs if r["job_type"] == "setrole"}
        self.assertEqual(len(pools), 1, runs)
        self.assertGreater(int(pools.pop()), 0)
        self.assertNotIn("permission denied", d.log())
        self.assertNotIn("cannot prepare", d.log())

    def test_a_statement_whose_run_ended_is_stopped_in_the_server(self):
        # a run that timed out or was cancelled in a query left the query
        # running in the server: its connection, the only one handlers had
        # here, was held until the query ended (the next run's query waited
        # the 600 s), and so were the locks of its transaction
        self.scalar("CREATE TABLE public.lock_probe (x int)")
        self.addCleanup(self.scalar, "DROP TABLE IF EXISTS public.lock_probe")
        self.write("stuck.lua", 'return { timeout = "2 s", max_retries = 0,\n'
                   '  params = { tx = { type = "boolean", default = false } }, run = function(job)\n'
                   '  if job.params.tx then\n'
                   '    sluice.db.transaction(function()\n'
                   '      assert(sluice.db.query("LOCK TABLE public.lock_probe"))\n'
                   '      sluice.db.query("SELECT pg_sleep(600)")\n'
                   '    end)\n'
                   '  else\n'
                   '    sluice.db.query("SELECT pg_sleep(600)")\n'
                   '  end\n'
                   'end }\n')
        self.write("one.lua", 'return { run = function(job)\n'
                   '  return assert(sluice.db.query("SELECT 1 AS one"))[1]\n'
                   'end }\n')
        env = self.henv_pool(2)  # one for the daemon alone, one it shares with handlers
        sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'sluice' AND query = 'SELECT pg_sleep(600)'")
        with self.serve("--concurrency", "2", env=env) as d:
            d.wait_log("sluice serving")
            for how in ("timed out", "cancelled"):
                with self.subTest(how):
                    params = {"tx": True} if how == "cancelled" else {}
                    job = self.sluice("queue", "stuck", "--params", json.dumps(params), env=env).stdout.strip()
                    self.wait_for(lambda: self.scalar(sleeping) == "1", 30, "the query did not start")
                    if how == "cancelled":
                        self.assertIn("cancelling", self.sluice("jobs", "cancel", job, env=env).stdout)
                    status = "failed" if how == "timed out" else how
                    self.wait_for(lambda: self.result_of(job)["status"] == status, 30, f"the run was not {how}")
                    self.wait_for(lambda: self.scalar(sleeping) == "0", 30,
                                  "the query of the run that ended still runs")
                    # the transaction's lock is gone with it
                    self.scalar("BEGIN; LOCK TABLE public.lock_probe NOWAIT; COMMIT")
                    # and the connection serves the next run
                    one = self.sluice("queue", "one", env=env).stdout.strip()
                    self.wait_done(one)
                    self.assertEqual(self.result_of(one)["result"], {"one": 1})
        self.assertNotIn("level=warn msg=\"cannot", d.log())
        self.assertNotIn("database connection lost", d.log())

    # -------------------------------------------------------------- sandbox

    def test_bytes_postgres_refuses_are_recorded_replaced(self):
        # not UTF-8, or NUL (which jsonb has no room for), from a handler's result,
        # dataset report, log and error: one such run used to make Postgres refuse
        # the whole batch of outcomes, and the worker retried it for ever
        self.write("odd_bytes.lua", """return {
            datasets = { odd_data = { label = "Odd" } },
            run = function(job)
              job.log("log \\255\\254 bytes")
              job.log("log a\\0b")
              print("print c\\0d")
              job.dataset("odd_data"):success(3, { note = "x\\255\\0y" })
              return { s = "a\\255b", nul = "c\\0d" }
            end }""")
        self.write("odd_error.lua", """return { run = function(job) error("bad \\255 byte, a\\0b") end }""")
        env = self.henv()
        odd = self.sluice("queue", "odd_bytes", env=env).stdout.strip()
        err = self.sluice("queue", "odd_error", "--max-retries", "0", env=env).stdout.strip()
        fine = self.sluice("queue", "echo", env=env).stdout.strip()
        with self.serve("--concurrency", "4", env=env) as d:
            for job in (odd, err, fine):
                self.wait_done(job)
            self.assertIn("bad \ufffd byte", d.log())  # the daemon's own log stays UTF-8 too
        res = self.result_of(odd)
        self.assertEqual(res["status"], "completed")
        self.assertEqual(res["result"], {"s": "a\ufffdb", "nul": "c\ufffdd"})
        ds = self.one("SELECT records_affected, metadata FROM sluice.dataset_status WHERE dataset_key = 'odd_data'")
        self.assertEqual(ds["records_affected"], 3)
        self.assertEqual(ds["metadata"], {"note": "x\ufffd\ufffdy"})
        logs = self.scalar(f"SELECT logs FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{odd}'")
        # each byte as U+FFFD, as in results; a NUL no longer ends the line
        self.assertIn("log \ufffd\ufffd bytes\n", logs)
        self.assertIn("log a\ufffdb\n", logs)
        self.assertIn("print c\ufffdd", logs)
        self.assertEqual(self.result_of(err)["status"], "failed")
        self.assertIn("bad \ufffd byte, a\ufffdb", self.result_of(err)["error_message"])
        self.assertEqual(self.result_of(fine)["status"], "completed")

    def test_an_outcome_the_database_refuses_holds_up_no_other(self):
        # a trigger of the deployment's (here: the test's) refuses one run's result:
        # the rest of its batch is recorded, it is recorded as a bare failure, and
        # the worker goes on claiming
        self.write("poison.lua", """return { run = function(job) return { poison = true } end }""")
        env = self.henv()
        first = [self.sluice("queue", "echo", env=env).stdout.strip() for _ in range(3)]
        poison = self.sluice("queue", "poison", "--max-retries", "0", env=env).stdout.strip()
        first += [self.sluice("queue", "echo", env=env).stdout.strip() for _ in range(3)]
        self.refuse_results("poison", "true", "poisoned result")
        with self.serve("--concurrency", "8", env=env) as d:
            for job in first + [poison]:
                self.wait_done(job)
            later = self.sluice("queue", "echo", env=env).stdout.strip()
            self.wait_done(later)
            self.assertIn("recording it as failed", d.log())
        for job in first + [later]:
            self.assertEqual(self.result_of(job)["status"], "completed", job)
        res = self.result_of(poison)
        self.assertEqual(res["status"], "failed")
        self.assertIsNone(res["result"])
        self.assertIn("the run's outcome could not be recorded: poisoned result", res["error_message"])

    def test_a_run_refused_even_as_a_failure_is_held_only_until_it_is_rescued(self):
        # an outcome the database refuses even as a bare failure is dropped:
        # the run's lease runs out and a rescue fails it. The worker holds such
        # a run meanwhile (a sweep must not give back a run that ran); it held
        # them all for its whole life. Once it sees one failed, it lets it go
        env = self.henv({"SLUICE_LOG_LEVEL": "debug"})
        self.write("stuck.lua", "return { max_retries = 0, run = function(job) return { stuck = true } end }\n")
        with self.serve("--lease", "3", env=env) as d:
            d.wait_log("sluice serving")
            # a trigger of the deployment's (here: the test's) refuses every
            # end of such a run but a rescue's
            self.scalar("""CREATE FUNCTION public.refuse_end() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.job_type = 'stuck' AND NEW.status <> 'running'
                       AND coalesce(NEW.error_message, '') NOT LIKE 'worker lost:%' THEN
                        RAISE EXCEPTION 'ends are refused';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_end BEFORE UPDATE ON sluice.scheduled_job_runs
                    FOR EACH ROW EXECUTE FUNCTION public.refuse_end()""")
            job = self.sluice("queue", "stuck", env=env).stdout.strip()
            d.wait_log("the database refused a run's outcome even as a bare failure")
            self.wait_done(job)
            d.wait_log('msg="runs whose outcomes were refused are no longer running here"')
            line = next(l for l in d.log().splitlines() if "refused are no longer running here" in l)
        run = self.one(f"SELECT id::text, status, error_message FROM sluice.scheduled_job_runs "
                       f"WHERE scheduled_job_id = '{job}'")
        self.assertEqual(run["status"], "failed")
        self.assertTrue(run["error_message"].startswith("worker lost: lease expired at "), run)
        self.assertIn(f"runs={{{run['id']}}}", line)
        self.assertIn(" count=1", line)

    def test_oversized_results_and_reports_fail_their_run(self):
        # a worker records its batch of outcomes in one statement: these limits
        # keep one run from making it too big for Postgres
        self.write("big_result.lua", """return { run = function(job)
            return { s = string.rep("x", 17 * 1024 * 1024) } end }""")
        self.write("big_report.lua", """return { datasets = { big_data = { label = "Big" } },
            run = function(job)
              job.dataset("big_data"):success(1, { s = string.rep("y", 2 * 1024 * 1024) })
              return {} end }""")
        env = self.henv()
        big = self.sluice("queue", "big_result", "--max-retries", "0", env=env).stdout.strip()
        rep = self.sluice("queue", "big_report", "--max-retries", "0", env=env).stdout.strip()
        fine = self.sluice("queue", "echo", env=env).stdout.strip()
        with self.serve("--concurrency", "3", env=env):
            for job in (big, rep, fine):
                self.wait_done(job)
        self.assertEqual(self.result_of(big)["error_message"],
                         "the handler's return value is 17.0 MiB as JSON; a run's result may be at most "
                         "16 MiB (keep bulk data in tables or the asset store)")
        self.assertIn("big_report.lua:3: job.dataset: the report for 'big_data' is 2048 KiB as JSON; "
                      "at most 1024 KiB", self.result_of(rep)["error_message"])
        self.assertEqual(self.result_of(fine)["status"], "completed")

    def test_a_run_with_a_hundred_thousand_tasks_keeps_its_lease(self):
        # a task left its run's, its parent's and the ready list by walking them:
        # 100,000 tasks held the loop for minutes, the process's leases went
        # unrenewed, and every run it had was stopped as "lease lost"
        self.write("many_tasks.lua", """return { max_retries = 0, run = function(job)
            local hs, s = {}, 0
            for i = 1, 100000 do hs[i] = sluice.spawn(function() sluice.sleep(0.01) return i end) end
            for i = 1, #hs do s = s + sluice.wait(hs[i]) end
            -- and as many never started, cancelled when the run ends
            for _ = 1, 100000 do sluice.spawn(function() sluice.sleep(1) end) end
            return { s = s }
          end }""")
        proc = self.sluice("run", "many_tasks", "--json", env=self.henv(), check=False)
        out = json.loads(proc.stdout)
        self.assertEqual(out["status"], "completed", out["error"])
        self.assertEqual(out["result"]["s"], 100000 * 100001 // 2)

    def test_a_job_object_gets_its_methods_on_first_use(self):
        # the methods are made when one is first used (most runs use none):
        # until then the object shows only its fields, a method the handler set
        # itself stays, the shared metatable is out of reach, and a run's
        # parameters are its own table whether or not it was given any
        self.write("job_object.lua", """return {
            params = { n = { type = "integer" } },
            run = function(job)
              local r = { fields = {} }
              for k in pairs(job) do r.fields[#r.fields + 1] = k end
              table.sort(r.fields)
              r.meta = tostring(getmetatable(job))
              r.set = select(2, pcall(setmetatable, job, {}))
              job.params.mine = true -- its own table, written freely
              r.params = job.params
              local mine = function() return "mine" end
              job.log = mine
              job.checkpoint("k", 1) -- makes the others
              r.kept = job.log == mine
              r.read = job.checkpoint("k")
              r.dataset = type(job.dataset)
              return r
            end }""")
        env = self.henv()
        for params, want in (("{}", {"mine": True}), ('{"n": 2}', {"n": 2, "mine": True})):
            with self.subTest(params=params):
                proc = self.sluice("run", "job_object", "--params", params, "--json", env=env, check=False)
                out = json.loads(proc.stdout)
                self.assertEqual(out["status"], "completed", out["error"])
                r = out["result"]
                self.assertEqual(r["fields"], ["attempt", "id", "params", "run_id", "trigger_source", "type"])
                self.assertEqual(r["meta"], "false")
                self.assertEqual(r["set"], "cannot change a protected metatable")
                self.assertEqual(r["params"], want)
                self.assertEqual((r["kept"], r["read"], r["dataset"]), (True, 1, "function"))

    def test_garbage_past_the_memory_cap_is_collected_not_killed(self):
        # 20 MiB strings made and dropped in a loop under a 64 MiB cap: what is
        # live stays under 45 MiB, but the collector had not reached the garbage
        # when the cap was met, and the run was killed (not to be retried) on the
        # first refusal, before Lua's emergency collection could free it
        self.write("churn.lua", """return { run = function(job)
            local n = 0
            for i = 1, 20 do
              local s = string.rep("x", 20 * 1024 * 1024) .. i
              n = n + #s
            end
            return { n = n }
          end }""")
        self.write("hog.lua", """local keep = {}
          return { run = function(job)
            for i = 1, 20 do  -- live data past the cap: killed, pcall or not
              pcall(function() keep[#keep + 1] = string.rep("x", 20 * 1024 * 1024) .. i end)
            end
            return { kept = #keep }
          end }""")
        env = self.henv({"SLUICE_MEMORY_LIMIT_MB": "64"})
        proc = self.sluice("run", "churn", "--json", env=env, check=False)
        out = json.loads(proc.stdout)
        self.assertEqual(out["status"], "completed", out["error"])
        self.assertEqual(out["result"]["n"], 20 * 20 * 1024 * 1024 + 9 + 2 * 11)
        proc = self.sluice("run", "hog", "--json", env=env, check=False)
        out = json.loads(proc.stdout)
        self.assertEqual(out["status"], "failed", out)
        self.assertIn("memory limit exceeded", out["error"])

    def test_a_run_logging_megabytes_does_not_flood_the_daemon_log(self):
        # every line of every run went to the daemon's log whole: a handler
        # logging 100 KiB lines in a loop wrote 30 MB there in seconds (and
        # hundreds of MB a minute), holding the loop while each was written
        self.write("flood.lua", """return { run = function(job)
            local line = ("x"):rep(100 * 1024)
            for i = 1, 300 do job.log(line) if i % 20 == 0 then sluice.sleep(0) end end
            job.log("done")
            return { ok = true }
          end }""")
        env = self.henv()
        job = self.sluice("queue", "flood", "--max-retries", "0", env=env).stdout.strip()
        with self.serve(env=env) as d:
            self.wait_done(job)
            self.assertEqual(d.stop(timeout=30), 0)
            log = d.log()
        self.assertEqual(self.result_of(job)["status"], "completed")
        self.assertIn(" … [line cut: 102400 bytes in all]", log)
        self.assertEqual(log.count("this run's log is past 16 MiB: its further lines are kept only "
                                   "in its record, up to 1 MiB"), 1)
        self.assertNotIn('msg="done"', log)
        self.assertLess(len(log), 17 * 1024 * 1024)

    def test_a_huge_error_message_is_cut(self):
        # an error's text was stored whole, twice (the run's error, the job's
        # last error), and written whole to the log: 100 MB for a 100 MB error
        self.write("big_error.lua", """return { run = function(job)
            error(string.rep("€", 1024 * 1024) .. "END", 0) end }""")
        env = self.henv()
        job = self.sluice("queue", "big_error", "--max-retries", "0", env=env).stdout.strip()
        with self.serve(env=env) as d:
            self.wait_done(job)
            log = d.log()
        res = self.result_of(job)
        err = res["error_message"]
        note = " … [error message cut: 3145731 bytes in all]"
        self.assertTrue(err.endswith(note), err[-200:])
        body = err[:-len(note)]
        # cut between two characters, at most 64 KiB of it
        self.assertEqual(body, "€" * len(body))
        self.assertLessEqual(len(body.encode()), 64 * 1024)
        self.assertGreater(len(body.encode()), 64 * 1024 - 3)
        self.assertEqual(self.scalar(f"SELECT last_error FROM sluice.scheduled_jobs WHERE id = '{job}'"), err)
        self.assertNotIn("END", log)
        self.assertNotIn("END", self.scalar(f"SELECT logs FROM sluice.scheduled_job_runs "
                                            f"WHERE scheduled_job_id = '{job}'"))

    def test_a_handler_with_bytes_postgres_refuses_is_kept_out_alone(self):
        # its label would have made every command's registry sync fail
        self.write("bad_label.lua", """return { label = "Bad \\255 label", run = function(job) return {} end }""")
        self.write("bad_choice.lua", """return { params = { m = { type = "string", enum = { "a", "b\\0" } } },
            run = function(job) return {} end }""")
        env = self.henv()
        check = self.sluice("check", env=env, check=False)
        self.assertIn("bad_label.lua: label: is not valid UTF-8", check.stdout + check.stderr)
        self.assertIn("bad_choice.lua: params or datasets: a label, description, default or choice "
                      "contains a NUL byte", check.stdout + check.stderr)
        job = self.sluice("queue", "echo", env=env).stdout.strip()
        with self.serve(env=env) as d:
            self.wait_done(job)
            d.wait_log("bad_label.lua")
        self.assertEqual(self.result_of(job)["status"], "completed")
        self.assertEqual(self.count("sluice.job_types", "name IN ('bad_label', 'bad_choice')"), 0)

    def test_misbehaving_handlers_fail_only_their_run(self):
        for name, src in BAD_HANDLERS.items():
            self.write(f"{name}.lua", src)
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000", "SLUICE_MEMORY_LIMIT_MB": "128"})
        jobs = {name: self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
                for name in BAD_HANDLERS}
        after = self.sluice("queue", "echo", "--params", '{"message": "still here"}', env=env).stdout.strip()
        with self.serve("--concurrency", "1", env=env):
            for job in list(jobs.values()) + [after]:
                self.wait_done(job, timeout=60)
        errors = {name: self.result_of(job)["error_message"] or "" for name, job in jobs.items()}
        statuses = {name: self.result_of(job)["status"] for name, job in jobs.items()}
        self.assertTrue(all(s == "failed" for s in statuses.values()), statuses)
        self.assertIn("instruction budget exceeded", errors["spin"])
        self.assertIn("instruction budget exceeded", errors["spin_pcall"])
        self.assertIn("memory", errors["bomb"])
        self.assertIn("memory limit exceeded", errors["bomb_pcall"])
        self.assertIn("instruction budget exceeded", errors["spin_child"])
        self.assertIn("memory limit exceeded", errors["bomb_child"])
        self.assertIn("undeclared global 'leaked'", errors["global_write"])
        self.assertIn("unknown global 'undefined_name'", errors["global_read"])
        self.assertIn("execute", errors["escape"])
        # odd error values and results are said plainly, not as "table: 0x…"
        self.assertEqual(errors["err_table"], 'error value {"code":7}')
        self.assertEqual(errors["err_nil"], "error(nil): the handler raised no message")
        self.assertEqual(errors["fn_result"], "the handler's return value cannot be encoded as JSON: "
                                              "Cannot serialise function: type not supported")
        self.assertEqual(errors["err_deep_table"], "error value: a table that cannot be written as "
                                                   "JSON (Cannot serialise, excessive nesting (1001))")
        self.assertEqual(errors["err_fn_table"], "error value: a table that cannot be written as "
                                                 "JSON (Cannot serialise function: type not supported)")
        overflow = (r": stack overflow: calls nested too deeply \(\d+ levels: a function that calls itself "
                    r"without end\?\)$")
        self.assertRegex(errors["gsub_recursion"], r"^\S+gsub_recursion\.lua:2" + overflow)
        self.assertRegex(errors["pcall_recursion"], r"^\S+pcall_recursion\.lua:2" + overflow)
        self.assertRegex(errors["lua_recursion"], r"^\S+lua_recursion\.lua:2" + overflow)
        self.assertIn("the error value could not be said as text: ", errors["err_tostring_raises"])
        self.assertIn("inner", errors["err_tostring_raises"])
        self.assertIn("no such field", errors["err_index_raises"])
        self.assertIn("instruction budget exceeded", errors["err_tostring_spins"])
        self.assertEqual(errors["close_spins"], "timed out after 1s")
        self.assertEqual(self.result_of(after)["status"], "completed")
        self.assertEqual(self.result_of(after)["result"]["message"], "still here")

    def test_a_coroutine_spinning_where_it_was_not_made_holds_up_no_other_run(self):
        # A coroutine keeps the count hook of the thread that made it. One made
        # by a file's top level (under the load's budget) and resumed by a run,
        # or made by a run and resumed by host-run code (an error value's
        # __tostring, the __close of a run that timed out), had a hook that
        # counted nothing there: a loop in it held the worker for good.
        self.write("load_made.lua", """local spin = coroutine.wrap(function() while true do end end)
            return { run = function(job) spin() end }""")
        self.write("tostring_resumes.lua", """return { run = function(job)
            local spin = coroutine.wrap(function() while true do end end)
            error(setmetatable({}, { __tostring = function() spin() end }))
          end }""")
        self.write("close_resumes.lua", """return { timeout = 1, run = function(job)
            local spin = coroutine.wrap(function() while true do end end)
            local x <close> = setmetatable({}, { __close = function() spin() end })
            sluice.sleep(5)
          end }""")
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000"})
        names = ("load_made", "tostring_resumes", "close_resumes")
        jobs = {name: self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
                for name in names}
        after = self.sluice("queue", "echo", "--params", '{"message": "still here"}', env=env).stdout.strip()
        self.serve_until_done(list(jobs.values()) + [after], 1, env)
        errors = {name: self.result_of(job)["error_message"] or "" for name, job in jobs.items()}
        self.assertTrue(all(self.result_of(job)["status"] == "failed" for job in jobs.values()), errors)
        self.assertIn("instruction budget exceeded", errors["load_made"])
        self.assertIn("the error value could not be said as text: ", errors["tostring_resumes"])
        self.assertIn("instruction budget exceeded", errors["tostring_resumes"])
        self.assertEqual(errors["close_resumes"], "timed out after 1s")
        self.assertEqual(self.result_of(after)["result"]["message"], "still here")

    def test_json_text_longer_than_the_memory_cap_is_refused_while_it_is_built(self):
        # A table holding one large string many times is small, its JSON text
        # is not: built outside the Lua state, it took memory past the cap
        # without end (the process aborted once malloc failed), and pushed, the
        # cap killed the run, whatever pcall said.
        big = """local s = string.rep("x", 100000)
            local t = {}
            for i = 1, 300 do t[i] = s end
            """
        self.write("encode_big.lua", "return { run = function(job)\n" + big + """
            local ok, err = pcall(sluice.json.encode, t)
            return { ok = ok, err = err }
          end }""")
        self.write("return_big.lua", "return { run = function(job)\n" + big + "return t end }")
        env = self.henv({"SLUICE_MEMORY_LIMIT_MB": "16"})
        jobs = {name: self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
                for name in ("encode_big", "return_big")}
        with self.serve(env=env):
            for job in jobs.values():
                self.wait_done(job, timeout=60)
        said = "Cannot serialise, the text would be more than 16777216 bytes"
        caught = self.result_of(jobs["encode_big"])
        self.assertEqual(caught["status"], "completed", caught["error_message"])
        self.assertEqual(caught["result"], {"ok": False, "err": said})
        returned = self.result_of(jobs["return_big"])
        self.assertEqual((returned["status"], returned["error_message"]),
                         ("failed", "the handler's return value cannot be encoded as JSON: " + said))

    def test_a_run_that_raises_closes_its_to_be_closed_variables(self):
        # A coroutine that dies of an error keeps its to-be-closed variables
        # open until it is closed, and a run's was never closed: the __close
        # handlers the docs offer for releasing resources did not run when the
        # handler raised (or was killed). They run, and may still log; an error
        # one raises is logged, and the run keeps the handler's error.
        self.write("close_raises.lua", """return { max_retries = 0, run = function(job)
            local c <close> = setmetatable({}, { __close = function(_, err)
              job.log("closed with: %s", tostring(err))
            end })
            error("boom", 0)
          end }""")
        self.write("close_fails.lua", """return { max_retries = 0, run = function(job)
            local c <close> = setmetatable({}, { __close = function() error("in close", 0) end })
            error(sluice.permanent("the handler's"))
          end }""")
        self.write("close_spent.lua", """return { max_retries = 3, run = function(job)
            local c <close> = setmetatable({}, { __close = function() job.log("closed after the kill") end })
            while true do end
          end }""")
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000"})
        names = ("close_raises", "close_fails", "close_spent")
        jobs = {name: self.sluice("queue", name, env=env).stdout.strip() for name in names}
        with self.serve(env=env):
            for job in jobs.values():
                self.wait_done(job, timeout=60)
        runs = {name: self.one(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                               f"WHERE scheduled_job_id = '{job}'") for name, job in jobs.items()}
        self.assertEqual([runs[n]["status"] for n in names], ["failed"] * 3)
        self.assertEqual(runs["close_raises"]["error_message"], "boom")
        self.assertIn("closed with: boom", runs["close_raises"]["logs"])
        # the traceback first, then what the handlers log
        self.assertLess(runs["close_raises"]["logs"].index("stack traceback"),
                        runs["close_raises"]["logs"].index("closed with: boom"))
        self.assertEqual(runs["close_fails"]["error_message"], "the handler's")
        self.assertIn("a to-be-closed variable's __close raised: in close", runs["close_fails"]["logs"])
        self.assertIn("instruction budget exceeded", runs["close_spent"]["error_message"])
        self.assertIn("closed after the kill", runs["close_spent"]["logs"])

    def test_a_close_handler_failing_at_the_memory_cap_under_a_running_task_is_logged(self):
        # A task that cancels another runs that one's __close handlers while it
        # is itself running. At the memory cap, the message of a handler's error
        # was made as a Lua string, refused there with no protected call around
        # it: the process aborted.
        self.write("cap_cancel.lua", """return { max_retries = 0, run = function(job)
            local big = string.rep("e", 4 << 20) -- the error, made before the cap is near
            local h = sluice.spawn(function()
              local c <close> = setmetatable({}, { __close = function() error(big, 0) end })
              sluice.sleep(10)
            end)
            sluice.sleep(0)
            local keep = {}
            pcall(function()
              while true do keep[#keep + 1] = string.rep("x", 1 << 20) end
            end)
            h:cancel()
            return #keep
          end }""")
        env = self.henv({"SLUICE_MEMORY_LIMIT_MB": "32"})
        job = self.sluice("queue", "cap_cancel", env=env).stdout.strip()
        after = self.sluice("queue", "echo", "--params", '{"message": "still here"}', env=env).stdout.strip()
        self.serve_until_done([job, after], 1, env)
        run = self.one(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                       f"WHERE scheduled_job_id = '{job}'")
        self.assertEqual(run["status"], "failed")
        self.assertIn("memory limit exceeded", run["error_message"])
        self.assertIn("a to-be-closed variable's __close raised: eeee", run["logs"])
        self.assertIn(" … [error message cut: 4194304 bytes in all]", run["logs"])
        self.assertEqual(self.result_of(after)["result"]["message"], "still here")

    def test_the_close_handlers_of_a_run_that_timed_out_may_log_to_it(self):
        # They ran cut off from their task, so job.log raised there ("this job
        # object is another run's, which is still going"), and nothing said so.
        self.write("close_logs.lua", """return { max_retries = 0, timeout = 1, run = function(job)
            local c <close> = setmetatable({}, { __close = function() job.log("main cleaned up") end })
            local h = sluice.spawn(function()
              local d <close> = setmetatable({}, { __close = function() job.log("task cleaned up") end })
              sluice.sleep(5)
            end)
            sluice.sleep(5)
          end }""")
        env = self.henv()
        job = self.sluice("queue", "close_logs", env=env).stdout.strip()
        with self.serve(env=env):
            self.wait_done(job, timeout=60)
        run = self.one(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                       f"WHERE scheduled_job_id = '{job}'")
        self.assertEqual((run["status"], run["error_message"]), ("failed", "timed out after 1s"))
        self.assertIn("main cleaned up", run["logs"])
        self.assertIn("task cleaned up", run["logs"])
        self.assertNotIn("__close raised", run["logs"])

    def test_error_values_and_close_handlers_are_held_to_the_memory_cap(self):
        # The host reads a run's error value (its __tostring) and closes its
        # to-be-closed variables outside the run's task, where no memory cap
        # held: a handler could take the worker's memory past it there.
        hog = """local t = {}
              for i = 1, 64 do t[i] = string.rep("x", 1 << 20) .. i end"""
        self.write("tostring_hog.lua", """return { max_retries = 0, run = function(job)
            error(setmetatable({}, { __tostring = function()
              """ + hog + """
              return "held " .. #t .. " MiB"
            end }))
          end }""")
        self.write("close_hog.lua", """return { max_retries = 0, run = function(job)
            local c <close> = setmetatable({}, { __close = function()
              """ + hog + """
              job.log("held %d MiB", #t)
            end })
            error("boom", 0)
          end }""")
        env = self.henv({"SLUICE_MEMORY_LIMIT_MB": "32"})
        jobs = {name: self.sluice("queue", name, env=env).stdout.strip() for name in ("tostring_hog", "close_hog")}
        after = self.sluice("queue", "echo", "--params", '{"message": "still here"}', env=env).stdout.strip()
        with self.serve(env=env):
            for job in list(jobs.values()) + [after]:
                self.wait_done(job, timeout=60)
        runs = {name: self.one(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                               f"WHERE scheduled_job_id = '{job}'") for name, job in jobs.items()}
        self.assertEqual(runs["tostring_hog"]["error_message"],
                         "the error value could not be said as text: not enough memory")
        self.assertEqual(runs["close_hog"]["error_message"], "boom")
        self.assertIn("a to-be-closed variable's __close raised: not enough memory", runs["close_hog"]["logs"])
        self.assertNotIn("held", runs["close_hog"]["logs"])
        self.assertEqual(self.result_of(after)["result"]["message"], "still here")

    def test_a_backtracking_pattern_fails_its_run_and_holds_up_no_other(self):
        # One call of the standard library's matcher is not counted by the
        # instruction budget nor stopped by the run's timeout: on 5,000 x's,
        # "x*x*y" backtracks for over two minutes with the whole worker held.
        # sluice's matcher gives up after its step budget (src/lua_pattern.c).
        self.write("ticker.lua", TICKER)
        self.write("backtrack.lua", """return { run = function(job)
            local s = ("x"):rep(5000)
            return { at = s:find("x*x*y") }
          end }""")
        self.write("backtrack_forms.lua", """return { run = function(job)
            local s = ("x"):rep(5000)
            local forms = {
              function() return string.find(s, "x*x*y") end,
              function() return s:match("(x*)x*y") end,
              function() return s:gsub("x-x-y", "") end,
              function() for w in s:gmatch("x*x*y") do end end,
            }
            local errs = {}
            for i, f in ipairs(forms) do errs[i] = select(2, pcall(f)) end
            return { errs = errs, ordinary = s:sub(1, 20):gsub("x+", "y") }
          end }""")
        env = self.henv()
        ticker = self.sluice("queue", "ticker", env=env).stdout.strip()
        bad = [self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
               for name in ("backtrack", "backtrack_forms", "backtrack")]
        with self.serve("--concurrency", "2", env=env) as d:
            for job in bad:
                self.wait_done(job, timeout=60)
            echo = self.sluice("queue", "echo", "--params", '{"message": "still here"}',
                               env=env).stdout.strip()
            self.wait_done(echo)
            self.wait_done(ticker, timeout=60)
            self.assertEqual(d.stop(timeout=30), 0, d.log())
        limit = "pattern too complex for this input (more than"
        simplify = "matching steps); simplify the pattern or the input"
        first = self.result_of(bad[0])
        self.assertEqual(first["status"], "failed")
        self.assertRegex(first["error_message"], r"backtrack\.lua:3: string\.find: ")
        self.assertIn(limit, first["error_message"])
        self.assertIn(simplify, first["error_message"])
        self.assertEqual(self.result_of(bad[2])["status"], "failed")
        forms = self.result_of(bad[1])
        self.assertEqual(forms["status"], "completed")
        errs = forms["result"]["errs"]
        for err, name in zip(errs, ("string.find", "string.match", "string.gsub", "string.gmatch")):
            self.assertIn(f"{name}: {limit}", err)
        self.assertEqual(forms["result"]["ordinary"], "y")
        self.assertEqual(self.result_of(echo)["status"], "completed")
        # the ticker's 50 ms sleeps went on while the patterns were stopped:
        # a held worker would have left a gap of minutes (each stopped call
        # holds the loop for its step budget, some 40 ms, several times that
        # under the sanitizers on a loaded machine)
        tick = self.result_of(ticker)
        self.assertEqual(tick["status"], "completed")
        self.assertLess(tick["result"]["max_gap"], 20)

    def test_endless_library_loops_and_finalizers_hold_up_no_other_run(self):
        # Three more ways one call held the whole worker, out of reach of the
        # instruction budget: the standard library's string.rep and table.move
        # loop in C as long as their arguments say, and a __gc finalizer runs
        # inside the collector, where no hook is called (src/lua_bounded.c,
        # and the sandbox's setmetatable).
        self.write("ticker.lua", TICKER)
        self.write("empty_rep.lua", """return { run = function(job)
            return { len = #(""):rep(1e15), sep = #string.rep("", 1e15, "") }
          end }""")
        self.write("long_move.lua", """return { run = function(job)
            table.move({}, 1, 1e15, 1, {})
          end }""")
        self.write("spinning_gc.lua", """return { run = function(job)
            setmetatable({}, { __gc = function() while true do end end })
            for i = 1, 1e6 do local garbage = { i } end
          end }""")
        env = self.henv()
        ticker = self.sluice("queue", "ticker", env=env).stdout.strip()
        jobs = {name: self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
                for name in ("empty_rep", "long_move", "spinning_gc")}
        self.serve_until_done(list(jobs.values()) + [ticker], 2, env)
        rep = self.result_of(jobs["empty_rep"])
        self.assertEqual(rep["status"], "completed")
        self.assertEqual(rep["result"], {"len": 0, "sep": 0})
        move = self.result_of(jobs["long_move"])
        self.assertEqual(move["status"], "failed")
        self.assertRegex(move["error_message"],
                         r"long_move\.lua:2: table\.move: 1000000000000000 elements is more "
                         r"than one call may move \(at most 4194304\); move them in a loop")
        gc = self.result_of(jobs["spinning_gc"])
        self.assertEqual(gc["status"], "failed")
        self.assertRegex(gc["error_message"],
                         r"spinning_gc\.lua:2: setmetatable: __gc is not available to handlers")
        # the ticker went on: a held worker would never have ended it
        tick = self.result_of(ticker)
        self.assertEqual(tick["status"], "completed")
        self.assertLess(tick["result"]["max_gap"], 20)

    def test_library_calls_that_read_much_and_allocate_nothing_are_charged(self):
        # one call of sluice.sha256, utf8.len or table.sort is a few instructions
        # however long its input, and allocates nothing: a loop of them on one
        # 20 MB string or 300,000-element table held the worker for minutes
        self.write("ticker.lua", TICKER)
        self.write("hash_loop.lua", """return { run = function(job)
            local s = ("x"):rep(20 * 1024 * 1024)
            for i = 1, 2000 do sluice.sha256(s) end
          end }""")
        self.write("utf8_loop.lua", """return { run = function(job)
            local s = ("x"):rep(20 * 1024 * 1024)
            for i = 1, 2000 do utf8.len(s) end
          end }""")
        self.write("sort_loop.lua", """return { run = function(job)
            local t = {}
            for i = 1, 300000 do t[i] = i end
            for i = 1, 5000 do table.sort(t) end
          end }""")
        self.write("fine.lua", """return { run = function(job)
            local t = { 3, 1, 2 }
            table.sort(t)
            local seed = select(2, pcall(function() math.randomseed(42) end))
            return { t = t, n = utf8.len("héllo"), at = utf8.offset("héllo", 3),
                     h = sluice.sha256("abc"):sub(1, 8), seed = seed }
          end }""")
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000"})
        ticker = self.sluice("queue", "ticker", env=env).stdout.strip()
        jobs = {name: self.sluice("queue", name, "--max-retries", "0", env=env).stdout.strip()
                for name in ("hash_loop", "utf8_loop", "sort_loop", "fine")}
        self.serve_until_done(list(jobs.values()) + [ticker], 2, env)
        for name in ("hash_loop", "utf8_loop", "sort_loop"):
            run = self.result_of(jobs[name])
            self.assertEqual(run["status"], "failed", name)
            self.assertIn("instruction budget exceeded", run["error_message"], name)
        fine = self.result_of(jobs["fine"])
        self.assertEqual(fine["status"], "completed", fine)
        self.assertEqual(fine["result"]["t"], [1, 2, 3])
        self.assertEqual((fine["result"]["n"], fine["result"]["at"], fine["result"]["h"]), (5, 4, "ba7816bf"))
        # the generator is every handler's: one handler does not seed it for all
        self.assertRegex(fine["result"]["seed"], r"fine\.lua:4: math\.randomseed: the random generator "
                                                 r"is shared by every handler in the process")
        tick = self.result_of(ticker)
        self.assertEqual(tick["status"], "completed")
        self.assertLess(tick["result"]["max_gap"], 20)

    def test_a_string_built_by_appending_fails_its_run_and_holds_up_no_other(self):
        # `s = s .. piece` copies the whole string at each append, one
        # instruction whatever its length: 200,000 appends of 100 bytes are a
        # million instructions, far under the budget, and copy 2 TB, which held
        # the worker for many minutes, past the run's timeout. What a task
        # allocates counts against its budget too (src/lua_host.c).
        self.write("ticker.lua", TICKER)
        self.write("appender.lua", """return { timeout = 2, run = function(job)
            local piece, s = ("x"):rep(100), ""
            for i = 1, 200000 do s = s .. piece end
            return { len = #s }
          end }""")
        env = self.henv()
        ticker = self.sluice("queue", "ticker", env=env).stdout.strip()
        bad = self.sluice("queue", "appender", "--max-retries", "0", env=env).stdout.strip()
        self.serve_until_done([bad, ticker], 2, env)
        run = self.result_of(bad)
        self.assertEqual(run["status"], "failed")
        self.assertIn("instruction budget exceeded", run["error_message"])
        # the ticker went on: a worker held by the copying would have left a
        # gap of many minutes between its 50 ms sleeps
        tick = self.result_of(ticker)
        self.assertEqual(tick["status"], "completed")
        self.assertLess(tick["result"]["max_gap"], 20)

    def test_rawset_cannot_change_what_handlers_share(self):
        # the library tables are one read-only proxy per process: a field rawset
        # into one would have shadowed the library for every later run
        self.write("poison.lua", """return { run = function(job)
            local errs = {}
            for _, t in ipairs({ string, sluice, sluice.json, _ENV }) do
              local ok, err = pcall(rawset, t, "format", function() return "POISONED" end)
              errs[#errs + 1] = ok and "changed" or err
            end
            local own = {}
            rawset(own, "k", 1) -- its own tables are its own
            return { errs = errs, own = own.k }
          end }""")
        self.write("victim.lua", """return { run = function(job)
            return { fmt = string.format("%d", 42), json = type(sluice.json.format) } end }""")
        env = self.henv()
        poison = self.sluice("queue", "poison", "--max-retries", "0", env=env).stdout.strip()
        with self.serve("--concurrency", "1", env=env):
            self.wait_done(poison)
            victim = self.sluice("queue", "victim", env=env).stdout.strip()
            self.wait_done(victim)
        res = self.result_of(poison)["result"]
        self.assertEqual(res["errs"], ["rawset: string cannot be changed (read-only)",
                                       "rawset: sluice cannot be changed (read-only)",
                                       "rawset: sluice.json cannot be changed (read-only)",
                                       "rawset: the globals cannot be changed (read-only)"])
        self.assertEqual(res["own"], 1)
        self.assertEqual(self.result_of(victim)["result"], {"fmt": "42", "json": "nil"})

    def test_a_handler_cannot_change_the_libraries_of_another(self):
        # a module a handler requires is a table it can write, and so are the
        # metatables of the objects the libraries make; with one instance per
        # process, a handler that changed require("sluice.params").validate
        # failed every other job type's runs as "invalid parameters: POISONED"
        self.write("poison.lua", """return { run = function(job)
            require("sluice.params").validate = function() return nil, { "POISONED" } end
            local clean = require("sluice.clean")
            clean.text = function() return "POISONED" end
            getmetatable(sluice.permanent("x")).__tostring = function() return "POISONED" end
            getmetatable(sluice.db.query("SELECT 1 AS one")).__index.affected = -1
            local bad = select(2, pcall(function() local m = require("../x") return m end))
            return { own = clean.text("a"), same = require("sluice.clean") == clean, bad = bad }
          end }""")
        self.write("victim.lua", """return {
            params = { n = { type = "integer", default = 7 } },
            run = function(job)
              return { n = job.params.n, text = require("sluice.clean").text("a\0b"),
                       permanent = tostring(sluice.permanent("real")),
                       affected = sluice.db.query("SELECT 1 AS one").affected,
                       retried = sluice.retry(function() return "ok" end) }
            end }""")
        env = self.henv()
        poison = self.sluice("queue", "poison", "--max-retries", "0", env=env).stdout.strip()
        with self.serve("--concurrency", "1", env=env):
            self.wait_done(poison)
            victim = self.sluice("queue", "victim", "--max-retries", "0", env=env).stdout.strip()
            self.wait_done(victim)
        # the changes were made, in the poisoning handler's own instances
        res = self.result_of(poison)["result"]
        self.assertEqual((res["own"], res["same"]), ("POISONED", True))
        # a name require refuses is said at the handler's line, not the runtime's
        self.assertRegex(res["bad"], r"poison\.lua:7: bad module name '\.\./x'")
        run = self.result_of(victim)
        self.assertEqual(run["status"], "completed", run)
        self.assertEqual(run["result"], {"n": 7, "text": "ab", "permanent": "real",
                                         "affected": 1, "retried": "ok"})

    def test_a_checkpoint_save_that_is_refused_changes_nothing(self):
        # A key Postgres cannot store was refused by the database, in its own
        # words, after the value had been taken as this run's checkpoint:
        # reading the key back returned a value that was never saved.
        self.write("bad_keys.lua", """return { max_retries = 0, run = function(job)
            local out = {}
            for i, key in ipairs({ "bad\\xff", "nul\\0" }) do
              local ok, err = pcall(function() job.checkpoint(key, { n = i }) end)
              out[i] = { ok = ok, err = err, read = job.checkpoint(key) }
            end
            job.checkpoint("good", 1)
            out.good = job.checkpoint("good")
            return out
          end }""")
        env = self.henv()
        job = self.sluice("queue", "bad_keys", env=env).stdout.strip()
        with self.serve(env=env):
            self.wait_done(job)
        run = self.result_of(job)
        self.assertEqual(run["status"], "completed", run["error_message"])
        out = run["result"]
        for i, why in (("1", "is not valid UTF-8"), ("2", "contains a NUL byte")):
            self.assertEqual(out[i]["ok"], False)
            self.assertRegex(out[i]["err"], r"bad_keys\.lua:4: job\.checkpoint: the key " + why +
                             r" \(Postgres cannot store it\)$")
            self.assertNotIn("read", out[i])
        self.assertEqual(out["good"], 1)

    def test_a_checkpoint_outlives_a_failure_but_not_new_parameters_or_a_cancel(self):
        # saver appends its word to a checkpoint, then fails (for good with
        # permanent); with hold, it first waits until its job's parameters are
        # no longer those it started with, then saves once more
        self.write("saver.lua", """return {
            params = { word = { type = "string" }, hold = { type = "boolean", default = false },
                       permanent = { type = "boolean", default = false } },
            max_retries = 3, retry_base = 3600,
            run = function(job)
              job.checkpoint("seen", (job.checkpoint("seen") or "") .. job.params.word)
              if job.params.hold then
                for _ = 1, 300 do
                  local rows = sluice.db.query(
                    "SELECT parameters ->> 'word' AS w FROM sluice.scheduled_jobs WHERE id = $1", job.id)
                  if rows[1].w ~= job.params.word then break end
                  sluice.sleep(0.1)
                end
                job.checkpoint("late", true)
              end
              if job.params.permanent then error(sluice.permanent("given up")) end
              error("again")
            end }""")
        env = self.henv()

        def cp(job):
            return json.loads(self.scalar(f"SELECT checkpoint FROM sluice.scheduled_jobs WHERE id = '{job}'"))

        def failed_runs(job, n):
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"scheduled_job_id = '{job}' AND status = 'failed'") == n,
                          30, f"job {job} did not fail {n} times")

        once = self.sluice("queue", "saver", "--params", '{"word": "a", "permanent": true}', env=env).stdout.strip()
        every = self.sluice("schedule", "saver", "--cron", "0 0 1 1 *", "--params", '{"word": "c"}',
                            env=env).stdout.strip()
        held = self.sluice("schedule", "saver", "--cron", "0 0 1 1 *", "--params", '{"word": "e", "hold": true}',
                           env=env).stdout.strip()
        with self.serve("--poll", "0.2", env=env):
            # a one-time job failed for good keeps what it saved, for the run
            # that `jobs run-now` asks for once the cause is fixed
            self.wait_done(once)
            self.assertEqual(cp(once), {"seen": "a"})
            self.assertRegex(self.sluice("show", once, env=env).stdout,
                             r"\n  checkpoint +seen \(saved by its attempts: its next run resumes from them\)\n")
            self.assertEqual(json.loads(self.sluice("show", once, "--json", env=env).stdout)["job"]
                             ["checkpoint_keys"], ["seen"])
            self.sluice("jobs", "run-now", once, env=env)
            failed_runs(once, 2)
            self.wait_done(once)
            self.assertEqual(cp(once), {"seen": "aa"})
            # a recurring job awaiting its retry: new parameters clear what the
            # old ones saved; other changes keep it
            self.sluice("jobs", "run-now", every, env=env)
            failed_runs(every, 1)
            self.assertEqual(cp(every), {"seen": "c"})
            self.sluice("jobs", "edit", every, "--name", "kept", env=env)
            self.assertEqual(cp(every), {"seen": "c"})
            self.sluice("jobs", "edit", every, "--params", '{"word": "c"}', env=env)
            self.assertEqual(cp(every), {"seen": "c"}, "the same parameters given again are no change")
            self.sluice("jobs", "edit", every, "--params", '{"word": "d"}', env=env)
            self.assertEqual(cp(every), {})
            self.sluice("jobs", "run-now", every, env=env)
            failed_runs(every, 2)
            self.assertEqual(cp(every), {"seen": "d"})
            # cancelled while it awaits its retry: nothing of it is kept
            self.sluice("jobs", "cancel", every, env=env)
            self.assertEqual(cp(every), {})
            self.assertNotIn("checkpoint", self.sluice("show", every, env=env).stdout)
            self.assertEqual(json.loads(self.sluice("show", every, "--json", env=env).stdout)["job"]
                             ["checkpoint_keys"], [])
            # a run in flight during the edit: what it saves after it is not kept
            self.sluice("jobs", "run-now", held, env=env)
            self.wait_for(lambda: cp(held) == {"seen": "e"}, 30, "the held run saved nothing")
            self.sluice("jobs", "edit", held, "--params", '{"word": "f", "hold": true}', env=env)
            failed_runs(held, 1)
        self.assertEqual(cp(held), {})
        # archived, a job cannot run again: what it kept goes
        self.assertEqual(self.scalar("SELECT archived FROM sluice.apply_retention('0 s', NULL)"), "1")
        self.assertEqual(cp(once), {})
        logs = self.scalar(f"SELECT logs FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{held}'")
        self.assertIn('job.checkpoint: "late" not kept: the job\'s parameters were changed since this run started '
                      '(or the job is gone), so its next run starts afresh', logs)

    def test_a_job_object_kept_past_its_run_refuses_to_act(self):
        # kept in an upvalue, the first run's job would have written a checkpoint
        # into its finished job and logged into the second run
        self.write("keeper.lua", """local saved
            return { run = function(job)
              local r = {}
              if saved then
                r.log = select(2, pcall(saved.log, "old"))
                r.cp = select(2, pcall(saved.checkpoint, "x", 1))
              end
              saved = job
              sluice.wait(sluice.spawn(function() job.log("from a child task") end))
              r.enc = select(2, pcall(job.checkpoint, "f", function() end))
              r.fmt = select(2, pcall(function()
                job.log("%d", "x") -- line 12: misuse names the handler's line
              end))
              r.key = select(2, pcall(job.checkpoint, nil, 1))
              r.numkey = select(2, pcall(job.checkpoint, 5))
              r.big = select(2, pcall(job.checkpoint, "big", string.rep("x", 1048577)))
              r.fits = pcall(job.checkpoint, "fits", string.rep("y", 1048574))
              r.still = job.checkpoint("big") == nil and #job.checkpoint("fits")
              return r
            end }""")
        env = self.henv()
        first = self.sluice("queue", "keeper", env=env).stdout.strip()
        with self.serve("--concurrency", "1", env=env):
            self.wait_done(first)
            second = self.sluice("queue", "keeper", env=env).stdout.strip()
            self.wait_done(second)
        ended = "this job's run has ended (a job object is valid only during its run)"
        r = self.result_of(second)["result"]
        self.assertEqual(r["log"], "job.log: " + ended)
        self.assertEqual(r["cp"], "job.checkpoint: " + ended)
        self.assertEqual(r["enc"], "job.checkpoint: the value cannot be encoded as JSON: "
                                   "Cannot serialise function: type not supported")
        self.assertRegex(r["fmt"], r"keeper\.lua:12: job\.log: bad argument #2 to 'string\.format' "
                                   r"\(number expected")
        # a key that is not a string: not "runtime.lua:…: table index is nil"
        self.assertEqual(r["key"], "job.checkpoint: the key must be a string, got nil")
        self.assertEqual(r["numkey"], "job.checkpoint: the key must be a string, got number 5")
        # a value over 1 MiB as JSON is refused and not kept; one of 1 MiB is kept
        self.assertEqual(r["big"], "job.checkpoint: the value is 1048579 bytes as JSON, more than the 1048576 "
                                   "a checkpoint value may be (keep bulk data in tables or the asset store, "
                                   "and checkpoint where it is)")
        self.assertEqual((r["fits"], r["still"]), (True, 1048574))
        self.assertEqual(self.scalar(f"SELECT checkpoint FROM sluice.scheduled_jobs WHERE id = '{first}'"), "{}")
        logs = self.scalar(f"SELECT logs FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{second}'")
        self.assertIn("from a child task", logs)
        self.assertNotIn("old", logs)

    def test_a_run_cannot_resume_or_close_another_runs_coroutine(self):
        # a run's coroutine kept in an upvalue was resumed by the next run in the
        # middle of its sleep: the first run went on inside the second, its result
        # was lost, and it failed later as "cannot resume dead coroutine"
        self.write("grabber.lua", """local saved, done, first
            return { run = function(job)
              if not saved then
                saved, first = coroutine.running(), job
                for i = 1, 600 do  -- until the other run is done (bounded)
                  if done then break end
                  sluice.sleep(0.05)
                end
                return { first = true }
              end
              local r = {}
              r.resume = select(2, pcall(coroutine.resume, saved))
              r.close = select(2, pcall(coroutine.close, saved))
              local me = coroutine.running()
              r.child = select(2, pcall(sluice.wait, sluice.spawn(function()
                coroutine.resume(me, "early") -- line 16: the handler's line
              end)))
              local own = coroutine.wrap(function(x) return x * 2 end)
              r.own = own(21)
              r.log = select(2, pcall(first.log, "written by the other run"))
              done = true
              return r
            end }""")
        env = self.henv()
        jobs = [self.sluice("queue", "grabber", "--max-retries", "0", env=env).stdout.strip()
                for _ in range(2)]
        self.serve_until_done(jobs, 2, env, timeout=30)
        runs = [self.result_of(job) for job in jobs]
        self.assertEqual([r["status"] for r in runs], ["completed", "completed"], runs)
        first = [r["result"] for r in runs if r["result"].get("first")]
        second = [r["result"] for r in runs if not r["result"].get("first")]
        self.assertEqual(len(first), 1, runs)
        self.assertEqual(len(second), 1, runs)
        r = second[0]
        task = ("that coroutine is a sluice task (a run, or a task of sluice.spawn), which only "
                "sluice resumes or ends; use sluice.spawn and sluice.wait, or a coroutine of your own")
        self.assertEqual(r["resume"], "coroutine.resume: " + task)
        self.assertEqual(r["close"], "coroutine.close: " + task)
        self.assertRegex(r["child"], r"grabber\.lua:16: coroutine\.resume: that coroutine is a sluice task")
        self.assertEqual(r["own"], 42)
        # the other run's job object, while that run still goes: refused, and said so
        self.assertEqual(r["log"], "job.log: this job object is another run's, which is still going "
                                   "(a job object is valid only during its own run: use the job your "
                                   "run(job) was given)")

    def test_a_handler_that_yields_its_run_itself_fails_for_good(self):
        # coroutine.yield() in a handler's own code, outside any coroutine it
        # made: nothing would ever resume the run. It was failed as retryable, so
        # the same mistake ran again for every retry of the job; it is a
        # permanent failure, named, in the run itself and in a spawned task
        self.write("yielder.lua", """return { max_retries = 3, retry_base = "0.1s", run = function(job)
              job.log("before the yield")
              coroutine.yield()
              job.log("after the yield")
            end }""")
        self.write("yielder_child.lua", """return { max_retries = 3, retry_base = "0.1s", run = function(job)
              return { v = sluice.wait(sluice.spawn(function() coroutine.yield(1) return 2 end)) }
            end }""")
        env = self.henv()
        jobs = {name: self.sluice("queue", name, env=env).stdout.strip() for name in ("yielder", "yielder_child")}
        with self.serve(env=env) as d:
            for job in jobs.values():
                self.wait_done(job)
        said = ("coroutine.yield() called outside a coroutine the handler created: a handler must not "
                "yield its run itself; only sluice calls suspend it")
        for name, job in jobs.items():
            runs = self.sql(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                            f"WHERE scheduled_job_id = '{job}'")
            self.assertEqual([(r["status"], r["error_message"]) for r in runs], [("failed", said)], name)
            self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                             "failed", name)
        self.assertNotIn("after the yield", d.log())
        # in the foreground too: failed, and the job with it
        out = self.sluice("run", "yielder", "--json", env=env, check=False)
        self.assertEqual(out.returncode, 1, out.stderr)
        outcome = json.loads(out.stdout)
        self.assertEqual((outcome["status"], outcome["error"], outcome["job_status"]), ("failed", said, "failed"))

    def test_a_handler_file_that_never_finishes_loading_is_kept_out(self):
        self.write("load_spin.lua", """while true do end
            return { run = function(job) return {} end }""")
        self.write("load_raise.lua", """return { run = function(job) end,
            params = setmetatable({}, { __pairs = function() error("no pairs here") end }) }""")
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000"})
        check = self.sluice("check", env=env, check=False)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn("load_spin.lua: instruction budget exceeded", check.stdout + check.stderr)
        # each problem is one line: the runtime's traceback is left out
        self.assertRegex(check.stdout + check.stderr, r"load_raise\.lua: \S+load_raise\.lua:2: no pairs here\n")
        self.assertNotIn("stack traceback", check.stdout + check.stderr)
        job = self.sluice("queue", "echo", env=env).stdout.strip()
        with self.serve(env=env):
            self.wait_done(job)
        self.assertEqual(self.result_of(job)["status"], "completed")

    def test_a_handler_file_sorting_in_a_loop_at_load_is_kept_out(self):
        # a file's top level runs under a budget whose hook counts every 1,000
        # instructions: a loop of sorts of three million elements made some 250
        # calls of half a second each before the hook looked
        self.write("load_sort.lua", """local t = {}
            for i = 1, 3000000 do t[i] = i end
            for i = 1, 1000 do table.sort(t) end
            return { run = function(job) return {} end }""")
        env = self.henv({"SLUICE_INSTRUCTION_BUDGET": "20000000"})
        check = self.sluice("check", env=env, check=False, timeout=60)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn("load_sort.lua: instruction budget exceeded", check.stdout + check.stderr)

    def test_a_handler_file_that_allocates_past_the_memory_cap_is_kept_out(self):
        # a file's top level had no memory cap: a daemon reloading it grew
        # until the budget stopped it, gigabytes later (or the machine did)
        self.write("load_hog.lua", """local big = string.rep("x", 64 * 1024 * 1024)
            return { run = function(job) return { n = #big } end }""")
        self.write("load_hog_pcall.lua", """local ok = pcall(string.rep, "x", 64 * 1024 * 1024)
            return { run = function(job) return { ok = ok } end }""")
        env = self.henv({"SLUICE_MEMORY_LIMIT_MB": "16"})
        check = self.sluice("check", env=env, check=False)
        self.assertNotEqual(check.returncode, 0)
        out = check.stdout + check.stderr
        self.assertIn("load_hog.lua: memory limit exceeded", out)
        # pcall cannot keep a file that went past the cap
        self.assertIn("load_hog_pcall.lua: memory limit exceeded", out)
        self.assertNotIn("stack traceback", out)
        job = self.sluice("queue", "echo", env=env).stdout.strip()
        with self.serve(env=env):
            self.wait_done(job)
        self.assertEqual(self.result_of(job)["status"], "completed")
        refused = self.sluice("queue", "load_hog", env=env, check=False)
        self.assertEqual(refused.returncode, 2)


if __name__ == "__main__":
    harness.main()
