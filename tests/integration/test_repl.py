"""`sluice repl`: the interactive prompt driven through a pseudo-terminal, and the
non-interactive forms (`-e CODE`, a script on stdin).

Every read from the terminal is bounded; a REPL left running at the end of a test
is killed and its transcript attached to the failure.
"""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import tempfile
import termios
import time
import unittest

import harness
import pgfixture

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x07|\r")
READ_TIMEOUT = 30


class Terminal:
    """`sluice repl` on a pseudo-terminal: send keys, wait for text."""

    def __init__(self, env):
        self.raw = b""
        self.seen = 0  # expect() searches after this offset of the cleaned text
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a sized terminal, then the REPL
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
                os.execve(pgfixture.sluice_bin(), [pgfixture.sluice_bin(), "repl"], env)
            finally:
                os._exit(127)
        self.status = None

    def text(self):
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def _read(self, wait):
        r, _, _ = select.select([self.fd], [], [], wait)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return None
        if not data:
            return None
        self.raw += data
        return True

    def expect(self, pattern, timeout=READ_TIMEOUT):
        """Waits until the output after the last match matches pattern (a regex);
        returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text(), self.seen)
            if m:
                self.seen = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the REPL never printed {pattern!r} (waited {timeout}s); "
                                     f"after the last match:\n{self.text()[self.seen:]}")
            if self._read(min(left, 0.2)) is None:
                m = rx.search(self.text(), self.seen)
                if m:
                    self.seen = m.end()
                    return m
                raise AssertionError(f"the REPL closed the terminal before printing "
                                     f"{pattern!r}:\n{self.text()[self.seen:]}")

    def prompt(self):
        """Waits for the primary prompt ("> " on a line of its own, not ">> ")."""
        return self.expect(r"(?m)^> $")

    def send(self, keys):
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)

    def line(self, code):
        """Sends a line, waits for the next prompt; returns what came in between."""
        start = self.seen
        self.send(code + "\n")
        self.prompt()
        return self.text()[start:self.seen]

    def exited(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is not None

    def wait(self, timeout=READ_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                raise AssertionError(f"the REPL did not exit within {timeout}s:\n{self.text()}")
            self._read(0.1)
        while self._read(0) is True:
            pass
        return os.waitstatus_to_exitcode(self.status)

    def close(self):
        if not self.exited():
            os.kill(self.pid, signal.SIGKILL)
            self.wait()
        os.close(self.fd)


class ReplTest(harness.SluiceTest):

    def setUp(self):
        super().setUp()
        self.home = tempfile.mkdtemp(prefix="sluice-repl-")
        self.terminals = []

    def tearDown(self):
        # Every session ends with Ctrl-D at the prompt and must exit 0: that is
        # also where a sanitizer build reports leaks.
        problems = []
        for t in self.terminals:
            if not t.exited():
                t.send("\x04")
                try:
                    status = t.wait()
                except AssertionError as e:
                    status = str(e)
                if status != 0:
                    problems.append(f"the REPL exited {status} on Ctrl-D:\n{t.text()}")
            t.close()
        shutil.rmtree(self.home, ignore_errors=True)
        super().tearDown()
        if problems:
            self.fail("\n".join(problems))

    def repl_env(self, extra=None):
        return self.env({"SLUICE_HOME": self.home, "TERM": "xterm", **(extra or {})})

    def repl(self, extra_env=None):
        t = Terminal(self.repl_env(extra_env))
        self.terminals.append(t)
        t.expect("help\\(\\) lists the helpers")
        t.prompt()
        return t

    def run_e(self, code, check=True):
        return self.sluice("repl", "-e", code, env=self.repl_env(), check=check)

    # -------------------------------------------------------------- evaluation

    def test_expressions_and_statements(self):
        t = self.repl()
        self.assertRegex(t.line("1+1"), r"\n2\n")
        t.line("x = 40 + 2")
        self.assertRegex(t.line("=x"), r"\n42\n")
        self.assertRegex(t.line("'a' .. 'b', nil, true"), r'\n"ab"\tnil\ttrue\n')
        self.assertRegex(t.line("_"), r'\n"ab"\n')  # the last value
        out = t.line("nosuch.field")
        self.assertIn("unknown global 'nosuch'", out)
        self.assertRegex(t.line("local y = 5 return y * 2"), r"\n10\n")

    def test_help_names_every_helper_and_its_options(self):
        out = self.run_e("help()").stdout
        for helper in ("run(type, params [, {brand=…}])", "queue(type, params [, opts])",
                       "runs{type=…, brand=…, status=…, limit=10}", "health{brand=…, dataset=…}",
                       "types()", "reload()", "pp(value [, depth])"):
            self.assertIn(helper, out)
        for opt in ("brand", "at", "after", "priority", "dedupe_key", "max_retries", "name"):
            self.assertRegex(out, rf"\b{opt}\b")

    def test_multi_line_input(self):
        t = self.repl()
        t.send("for i = 1, 2 do\n")
        t.expect(r">> $")
        out = t.line("  print('line ' .. i) end")
        self.assertIn("line 1\nline 2", out)
        t.send("f = function(a,\n")
        t.expect(r">> $")
        t.send("b) return a + b\n")
        t.expect(r">> $")
        t.line("end")
        self.assertRegex(t.line("f(2, 3)"), r"\n5\n")
        # Ctrl-D in an unfinished chunk says why it cannot run and drops it
        t.send("if true then\n")
        t.expect(r">> $")
        t.send("\x04")
        t.expect("'end' expected near <eof>")
        t.prompt()
        self.assertRegex(t.line("3*3"), r"\n9\n")

    def test_pretty_printing(self):
        t = self.repl()
        out = t.line("{ list = {1, 2, 3}, name = 'x', deep = {a = {b = {c = {d = 1}}}}, [10] = true }")
        self.assertIn('list = { 1, 2, 3 }', out)
        self.assertIn('name = "x"', out)
        self.assertIn("c = {…}", out)  # below the depth limit
        self.assertIn("[10] = true", out)
        t.line("t = { name = 'loop' }; t.self = t")
        self.assertIn('{ name = "loop", self = <cycle> }', t.line("t"))
        self.assertIn("d = 1", t.line("pp({a = {b = {c = {d = 1}}}}, 10)"))
        out = t.line("sluice.db.query('select 1 as one, $1::jsonb as doc', {k = {1, 2}})")
        self.assertIn("doc = { k = { 1", out)

    def test_strings_print_as_literals_with_bytes_that_are_not_utf8_escaped(self):
        # UTF-8 text stays readable; a byte that is not part of valid UTF-8
        # (a lone \xff, a surrogate's encoding) prints as an escape, not raw
        p = self.run_e(r'"caf\u{e9} \xff\xfe", "a\0b\n", {["\x80"] = "\xed\xa0\x80"}')
        self.assertEqual(p.stdout, '"café \\255\\254"\t"a\\000b\\n"\t{ ["\\128"] = "\\237\\160\\128" }\n')

    def test_huge_values_are_cut_with_a_note_of_what_was_left_out(self):
        # a 10 MB string printed whole; a string of the cap's length still does
        p = self.run_e('string.rep("x", 10000000)')
        self.assertEqual(p.stdout, '"' + "x" * 10000 + '" … (9,990,000 more bytes)\n')
        self.assertEqual(self.run_e('string.rep("x", 10000)').stdout, '"' + "x" * 10000 + '"\n')
        self.assertEqual(self.run_e('{ s = string.rep("x", 10001) }').stdout,
                         '{\n  s = "' + "x" * 10000 + '" … (1 more byte),\n}\n')
        # cut between characters, not inside one
        self.assertEqual(self.run_e('"a" .. string.rep("é", 6000)').stdout,
                         '"a' + "é" * 4999 + '" … (2,002 more bytes)\n')
        big = "local t = {} for i = 1, 100000 do t[i] = i end "
        self.assertTrue(self.run_e(big + "return t").stdout.endswith("  100,\n  … (99,900 more),\n}\n"))
        # a million numbers in nested tables: the printing ran out of the
        # instruction budget ("the code ran too long") after building ~6 MB
        p = self.run_e(big + "local a = {} for i = 1, 100 do a[i] = i end local b = {} "
                             "for i = 1, 100 do b[i] = a end local c = {} for i = 1, 100 do c[i] = b end "
                             "return c")
        self.assertLess(len(p.stdout), 150000)
        self.assertRegex(p.stdout, r"\n    … \(\d+ more\),\n  },\n  … \(\d+ more\),\n}\n$")
        # as many values as a table holds (588 KB of numbers)
        p = self.run_e(big + "return table.unpack(t)")
        self.assertLess(len(p.stdout), 150000)
        self.assertRegex(p.stdout, r"^1\t2\t3\t.*\t… \(\d{2},\d{3} more values\)\n$")
        # print() writes what it is given
        self.assertEqual(len(self.run_e('print(string.rep("x", 200000))').stdout), 200001)

    def test_completion(self):
        t = self.repl()
        t.send("sluice.db.q\t")
        t.expect("uery")
        out = t.line('"select 41 + 1 as answer")')
        self.assertIn("answer = 42", out)
        # a job type inside run(" and a parameter name inside its params table
        t.send('run("ec\t')
        t.expect('ho"')
        t.send(", {mess\t")
        t.expect("age=")
        out = t.line('"completed"})')
        self.assertIn("echo: completed", out)

    # -------------------------------------------------------------- helpers

    def test_run_streams_the_log_and_records_the_run(self):
        t = self.repl()
        out = t.line('r = run("echo", {message = "hi"})')
        self.assertIn("echo: hi", out)
        self.assertRegex(out, r"completed in")
        self.assertEqual(t.line("r.message").split("\n")[1], '"hi"')
        run = self.one("SELECT r.status, r.trigger_source, j.trigger_source AS job_trigger, "
                       "w.kind, r.result->>'message' AS message FROM sluice.scheduled_job_runs r "
                       "JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id "
                       "JOIN sluice.workers w ON w.id = r.worker_id")
        self.assertEqual(run, {"status": "completed", "trigger_source": "repl",
                               "job_trigger": "repl", "kind": "repl", "message": "hi"})
        # a failing run raises with its error, and is recorded as failed
        out = t.line('run("echo", {fail = true})')
        # and says what became of its job, as the daemon's log does (echo: one retry)
        self.assertRegex(out, r"run \S+ failed after \d+\.\d\ds: .*echo was asked to fail; then retry "
                              r"attempt 2 of 2 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        self.assertNotIn('msg="run failed"', out)  # reported once, by the REPL
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'failed'"), 1)
        # bad parameters: nothing is started
        out = t.line('run("echo", {mesage = "typo"})')
        self.assertIn("did you mean 'message'", out)
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 2)

    def test_queue_returns_the_job_id(self):
        t = self.repl()
        t.line('id = queue("echo", {message = "later"}, {priority = 5})')
        job_id = re.search(r'"([0-9a-f-]{36})"', t.line("=id")).group(1)
        job = self.one(f"SELECT status, trigger_source, priority, parameters->>'message' AS message "
                       f"FROM sluice.scheduled_jobs WHERE id = '{job_id}'")
        self.assertEqual(job, {"status": "active", "trigger_source": "repl", "priority": 5,
                               "message": "later"})
        out = t.line('queue("no_such_type", {})')
        self.assertIn("unknown job type 'no_such_type'", out)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)
        for at in ("infinity", "-infinity"):
            out = t.line(f'queue("echo", {{}}, {{at = "{at}"}})')
            self.assertIn(f'queue: at must be a timestamp such as "2026-12-01T09:00:00Z" (or give after = '
                          f'seconds), not "{at}"', out)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)

    def test_queue_at_a_time_without_a_zone_is_utc(self):
        # it was read in the session's zone: here the database's default, New York's
        self.run_e("1")  # the schema
        zone = "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET TimeZone = %%L', current_database(), '%s'); END $$"
        self.scalar(zone % "America/New_York")
        self.addCleanup(self.scalar, zone % "UTC")
        for at, due in (("2026-12-01 09:00", "2026-12-01T09:00:00Z"),
                        ("2026-12-01T09:00:00+02:00", "2026-12-01T07:00:00Z")):
            p = self.run_e(f'return queue("noop", {{}}, {{at = "{at}"}})')
            job = p.stdout.strip().strip('"')
            self.assertEqual(self.scalar(
                "SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                f"FROM sluice.scheduled_jobs WHERE id = '{job}'"), due, at)
            self.assertIn(f"due: {due}\n", p.stderr, at)

    def test_queue_after_a_delay(self):
        # AT TIME ZONE bound tighter than the +: the query asked for
        # timezone(text, interval), which does not exist, and nothing was queued
        self.run_e("1")  # the schema
        for after, secs in (('"10 min"', 600), ("90", 90)):
            p = self.run_e(f'return queue("noop", {{}}, {{after = {after}}})')
            job = p.stdout.strip().strip('"')
            delay = self.scalar("SELECT extract(epoch FROM next_run_at - created_at)::int "
                                f"FROM sluice.scheduled_jobs WHERE id = '{job}'")
            self.assertAlmostEqual(int(delay), secs, delta=2, msg=after)
            self.assertRegex(p.stderr, r"due: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n")

    def test_queue_with_a_dedupe_key_says_which_job_holds_it(self):
        t = self.repl()
        first = re.search(r'"([0-9a-f-]{36})"', t.line('=queue("echo", {}, {dedupe_key = "k"})')).group(1)
        out = t.line('=queue("echo", {}, {dedupe_key = "k"})')
        self.assertIn(f"echo: a job with dedupe key 'k' is already pending or running: {first}", out)
        self.assertIn(f'"{first}"', out)
        # cancelled while a run (of a worker that exists only here) is in flight
        run = self.scalar("SELECT run_id FROM sluice.claim_jobs('00000000-0000-4000-8000-000000000001', 10, 600)")
        self.scalar(f"SELECT sluice.cancel_job('{first}')")
        out = t.line('=queue("echo", {}, {dedupe_key = "k"})')
        self.assertIn(f"echo: a job with dedupe key 'k' is cancelled but its run is still in flight: {first}; "
                      f"the key is free once that run has ended", out)
        self.assertIn(f'"{first}"', out)
        self.scalar(f"SELECT sluice.finish_run('{run}', 'cancelled', NULL, 'cancelled', '', false, NULL, NULL)")
        out = t.line('=queue("echo", {}, {dedupe_key = "k"})')
        self.assertNotIn("dedupe key", out)
        self.assertNotIn(first, out)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 2)
        # a paused job holds its key too, and is not called pending or running
        second = re.search(r'"([0-9a-f-]{36})"', out).group(1)
        self.scalar(f"SELECT sluice.pause_job('{second}')")
        out = t.line('=queue("echo", {}, {dedupe_key = "k"})')
        self.assertIn(f"echo: a job with dedupe key 'k' is paused: {second}; nothing new was queued "
                      f"(`sluice jobs resume` lets it run)", out)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 2)

    def test_a_run_whose_start_answer_was_lost_is_taken_up_again(self):
        # the connection breaks after the database made the job and started its
        # run, before the answer came: connected again, run() starts that run
        # afresh and runs it, with no attempt spent and no second job
        self.run_e("1")  # the schema and registry
        proxy = harness.ReplyCutter(self.db, b"start-answer-lost")
        self.addCleanup(proxy.close)
        proc = self.sluice("repl", "-e", 'return run("echo", {message = "start-answer-lost"}).message',
                           env=self.repl_env({"DATABASE_URL": proxy.url}))
        self.assertTrue(proxy.cut.is_set(), proc.stderr)
        self.assertEqual(proc.stdout, '"start-answer-lost"\n', proc.stderr)
        self.assertIn("connecting again to start the run", proc.stderr)
        jobs = self.sql("SELECT status, run_count FROM sluice.scheduled_jobs WHERE job_type = 'echo'")
        self.assertEqual(jobs, [{"status": "completed", "run_count": 1}])
        runs = self.sql("SELECT status, attempt_number, trigger_source FROM sluice.scheduled_job_runs")
        self.assertEqual(runs, [{"status": "completed", "attempt_number": 1, "trigger_source": "repl"}])

    def test_run_inside_a_transaction_is_refused(self):
        # its start was the transaction's, uncommitted, while its outcome was
        # recorded on another connection: the run completed, "could not be
        # recorded", and was left running once the transaction committed
        p = self.run_e('sluice.db.transaction(function() return run("echo", {}) end)', check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("run: cannot run a job inside sluice.db.transaction", p.stderr)
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 0)  # nothing was started
        # after the transaction, or in a task of its own, it runs
        p = self.run_e('sluice.db.transaction(function() end) return run("echo", {message = "after"})')
        self.assertIn('message = "after"', p.stdout)
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'completed'"), 1)

    def test_runs_health_types_reload(self):
        self.run_e('run("echo", {message = "one"})')
        out = self.run_e('runs{type = "echo", limit = 5}').stdout
        self.assertIn('trigger = "repl"', out)
        self.assertIn('status = "completed"', out)
        out = self.run_e("health()").stdout
        self.assertIn('dataset = "echo_data"', out)
        self.assertIn('state = "fresh"', out)
        out = self.run_e("types().echo.params.message").stdout
        self.assertIn('string = \\"hello\\"', out)
        self.assertRegex(self.run_e("reload()").stdout, r"^\d+\n$")

    def test_a_handler_file_that_never_loaded_is_no_job_type(self):
        # types() listed it as `broken = { params = {} }`, reload() counted it
        # and Tab offered it to run(), which cannot run it
        d = tempfile.mkdtemp(prefix="sluice-broken-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "broken.lua"), "w") as f:
            f.write("return { label = 'Broken', run = function(job) x = = 1 end }\n")
        env = self.repl_env({"SLUICE_HANDLERS": d + ":" + self.repl_env()["SLUICE_HANDLERS"]})
        before = self.sluice("repl", "-e", "reload()", env=self.repl_env()).stdout
        p = self.sluice("repl", "-e", "local t = types() return t.broken, t.echo ~= nil, reload()", env=env)
        self.assertIn("broken.lua", p.stderr)  # the problem is said
        self.assertEqual(p.stdout, f"nil\ttrue\t{before.strip()}\n")
        t = Terminal(env)
        self.terminals.append(t)
        t.prompt()
        t.send('run("bro\t')
        t.send('")\n')
        t.expect("unknown job type 'bro'")
        t.prompt()

    def test_helpers_refuse_filters_and_brands_that_name_nothing(self):
        # a misspelt filter used to list nothing and say nothing
        self.sluice("brands", "add", "Acme")
        for expr, message in [
            ('runs{brand = "nope"}', "runs: unknown brand 'nope'"),
            ('runs{type = "ecco"}', "runs: unknown job type 'ecco' — did you mean 'echo'?"),
            ('runs{status = "bogus"}', "runs: unknown status 'bogus' (one of: pending, running"),
            ("runs{limit = 0}", "runs: limit must be a whole number from 1 to 100000, not 0"),
            # as the CLI's --limit; a larger one was Postgres's "out of range for type integer"
            ("runs{limit = 3000000000}", "runs: limit must be a whole number from 1 to 100000, not 3000000000"),
            ('runs{limit = "3"}', 'runs: limit must be a whole number from 1 to 100000, not "3"'),
            ('health{brand = "nope"}', "health: unknown brand 'nope'"),
            ('health{dataset = "nope"}', "health: unknown dataset 'nope' (known: alpha_data, "),
            # the nearest dataset, as for a job type
            ('health{dataset = "echo_dat"}', "health: unknown dataset 'echo_dat' — did you mean 'echo_data'?"),
            ('run("echo", {}, {brand = ""})', 'run: brand must be a brand\'s name or id, not ""'),
            ('queue("echo", {}, {brand = ""})', 'queue: brand must be a brand\'s name or id, not ""'),
            # both problems at once, as `sluice queue` says them: the brand was told only on the next try
            ('queue("needs_brand", {nope = 1})', "queue: job type 'needs_brand' needs a brand "
             "({ brand = \"NAME\" } as queue's third argument), and its parameters: unknown parameter 'nope'"),
            # options checked as `sluice queue` checks them (they were raw check-constraint errors)
            ('queue("echo", {}, {max_retries = -1})', "queue: max_retries must be a whole number from 0 to 1000"),
            ('queue("echo", {}, {priority = 1.5})', "queue: priority must be a whole number from -1000000"),
            ('queue("echo", {}, {dedupe_key = ""})', 'queue: dedupe_key must be a non-empty string, not ""'),
            ('queue("echo", {}, {name = 5})', "queue: name must be a non-empty string, not a number"),
            # a date first, as --at: "epoch" and "tomorrow" were queued, 5 was Postgres's syntax error
            ('queue("echo", {}, {at = "epoch"})', 'queue: at must be a timestamp such as "2026-12-01T09:00:00Z"'),
            ('queue("echo", {}, {at = 5})', "queue: at must be a timestamp such as"),
        ]:
            p = self.run_e(expr, check=False)
            self.assertEqual(p.returncode, 1, expr)
            self.assertIn(message, p.stderr, expr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        self.assertEqual(self.run_e('#runs{brand = "Acme", type = "echo", status = "failed"}').stdout, "0\n")

    def test_parameters_postgres_cannot_store_are_refused(self):
        # bytes that are not UTF-8 were queued as U+FFFD (the encoder's
        # replacement) where `sluice queue` refuses them; now both refuse
        for expr, message in [
            (r'queue("echo", {message = "a\xffb"})', "queue: message: is not valid UTF-8"),
            (r'run("echo", {message = "a\xffb"})', "run: message: is not valid UTF-8"),
            (r'queue("echo", {["m\xff"] = 1})', "the name is not valid UTF-8"),
            (r'queue("echo", {message = "a\0b"})', "queue: message: contains a NUL byte"),
        ]:
            p = self.run_e(expr, check=False)
            self.assertEqual(p.returncode, 1, expr)
            self.assertIn(message, p.stderr, expr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        self.assertEqual(self.run_e(r'queue("echo", {message = "caf\u{e9}"})').returncode, 0)

    # -------------------------------------------------------------- keys

    def test_ctrl_c_cancels_the_running_job_not_the_repl(self):
        t = self.repl({"SLUICE_LEASE_SECONDS": "3"})  # a heartbeat every second
        t.send('run("sleep", {seconds = 30})\n')
        t.expect("started")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1)
        lease = self.scalar("SELECT lease_expires_at FROM sluice.scheduled_job_runs")
        self.wait_for(lambda: self.scalar("SELECT lease_expires_at FROM sluice.scheduled_job_runs")
                      != lease, timeout=10, message="the run's lease was never renewed")
        t.send("\x03")
        t.expect("interrupted")
        t.prompt()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'failed'") == 1,
                      message="the interrupted run was not recorded as failed")
        # it ended then, not when its 30 s sleep would have (the database's clock)
        self.assertEqual(self.scalar("SELECT completed_at < started_at + interval '30 s' "
                                     "FROM sluice.scheduled_job_runs"), "t")
        run = self.one("SELECT r.error_message, j.status FROM sluice.scheduled_job_runs r "
                       "JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id")
        self.assertEqual(run, {"error_message": "interrupted", "status": "failed"})
        # its one attempt is shown, though the job's cycle ended (attempts 0)
        job = self.scalar("SELECT id FROM sluice.scheduled_jobs")
        listing = self.sluice("jobs", env=self.env({"COLUMNS": "250"})).stdout
        self.assertRegex(listing, r"failed\s+—\s+1/\d+\s", listing)
        self.assertRegex(self.sluice("show", job).stdout,
                         r"attempts\s+1 of \d+ in its last cycle; 1 run in all")
        # the REPL goes on; Ctrl-C at the prompt clears the line
        self.assertRegex(t.line("1+1"), r"\n2\n")
        t.send("this is not lua")
        t.send("\x03")
        t.prompt()
        self.assertRegex(t.line("2+2"), r"\n4\n")
        # and a chunk that only waits is cancelled as well
        t.send("print('wait' .. 'ing') sluice.sleep(30)\n")
        t.expect("waiting")  # running: the echo of the typed line does not match
        t.send("\x03")
        t.expect("interrupted")
        t.prompt()

    def test_ctrl_c_stops_a_query_in_the_server_too(self):
        # the prompt came back, but the query went on in the server and held
        # the REPL's connection: the next query waited for it to end
        sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query = 'SELECT pg_sleep(600)'")
        t = self.repl()
        t.send('sluice.db.query("SELECT pg_sleep(600)")\n')
        self.wait_for(lambda: self.scalar(sleeping) == "1", message="the query did not start")
        t.send("\x03")
        t.expect("interrupted")
        t.prompt()
        self.wait_for(lambda: self.scalar(sleeping) == "0", message="the query still runs in the server")
        self.assertRegex(t.line('sluice.db.query("SELECT 7 AS n")[1].n'), r"\n7\n")

    def repl_with_a_run_in_flight(self):
        """A REPL (lease 3 s: a heartbeat every second) whose run of a long
        sleep is recorded as running."""
        t = self.repl({"SLUICE_LEASE_SECONDS": "3"})
        t.send('run("sleep", {seconds = 600})\n')
        t.expect("started")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1)
        return t

    def test_cancelling_the_job_stops_its_run_in_the_repl(self):
        # the REPL does not LISTEN: a cancel reaches its run with the next lease renewal
        t = self.repl_with_a_run_in_flight()
        job = self.scalar("SELECT id FROM sluice.scheduled_jobs")
        self.assertIn("cancelling", self.sluice("jobs", "cancel", job).stdout)
        t.expect(r"run \S+ cancelled after \d+\.\d\ds: cancelled; then job cancelled")  # not "failed after"
        t.prompt()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'cancelled'") == 1,
                      message="the cancelled run was not recorded as cancelled")
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "cancelled")
        self.assertRegex(t.line("1+1"), r"\n2\n")

    def test_deleting_the_job_stops_its_run_in_the_repl_as_cancelled(self):
        t = self.repl_with_a_run_in_flight()
        self.scalar("DELETE FROM sluice.scheduled_jobs RETURNING 1")
        t.expect("warning: the run could not be recorded: the run was no longer running: its job was deleted")
        t.expect(r"run \S+ cancelled after \d+\.\d\ds: its job was deleted")
        t.prompt()
        self.assertNotIn("failed after", t.text())
        self.assertRegex(t.line("1+1"), r"\n2\n")

    def test_ctrl_c_right_after_typing_clears_the_line(self):
        # The terminal discards typed text when a Ctrl-C arrives; the REPL may
        # have been woken for that text and find nothing to read by the time it
        # reads. (It took that for a hung-up terminal and exited, or waited in a
        # blocking read for the next key.) Gaps of 0 to 2 ms.
        t = self.repl()
        for i in range(30):
            t.send("this is not lua")
            time.sleep(0.0005 * (i % 5))
            t.send("\x03")
            t.prompt()
        self.assertRegex(t.line("3+3"), r"\n6\n")

    def test_non_ascii_input(self):
        t = self.repl({"LC_ALL": "C.UTF-8"})
        self.assertRegex(t.line("'héllo ✓'"), r'\n"héllo ✓"\n')
        self.assertRegex(t.line("#'✓'"), r"\n3\n")  # one character, three bytes

    def test_an_idle_repl_stays_live(self):
        # nothing renews a REPL's heartbeat while it holds no run, and an open
        # REPL showed as silent in `sluice workers` (its row in time deleted by
        # retention); it says it is there every third of its lease
        t = self.repl({"SLUICE_LEASE_SECONDS": "1"})  # a heartbeat every third of a second
        worker = self.scalar("SELECT id FROM sluice.workers WHERE kind = 'repl'")
        # renewed past two leases after its start, when one that renewed
        # nothing would have been silent already
        self.wait_for(lambda: self.scalar(f"SELECT heartbeat_at > started_at + interval '2.5 s' "
                                          f"FROM sluice.workers WHERE id = '{worker}'") == "t",
                      timeout=10, message="the idle REPL's heartbeat was not renewed")
        self.assertEqual(self.scalar(f"SELECT state FROM sluice.worker_status WHERE id = '{worker}'"), "live")
        self.assertRegex(t.line("1+1"), r"\n2\n")
        t.send("\x04")
        self.assertEqual(t.wait(), 0)
        self.assertEqual(self.scalar(f"SELECT state FROM sluice.worker_status WHERE id = '{worker}'"),
                         "stopped")

    def test_ctrl_d_exits_and_keeps_history(self):
        t = self.repl()
        t.line("answer = 42")
        t.send("\x04")
        self.assertEqual(t.wait(), 0)
        with open(os.path.join(self.home, "repl_history")) as f:
            self.assertIn("answer", f.read())  # libedit's format encodes the spaces
        worker = self.one("SELECT kind, stopped_at IS NOT NULL AS stopped FROM sluice.workers")
        self.assertEqual(worker, {"kind": "repl", "stopped": True})
        # the next session recalls it with the up arrow
        t = self.repl()
        t.send("\x1b[A")
        t.expect("answer = 42")
        t.send("\n")
        t.prompt()
        self.assertRegex(t.line("answer"), r"\n42\n")

    # -------------------------------------------------------------- no terminal

    def test_e_success_and_error(self):
        p = self.run_e("1 + 1")
        self.assertEqual(p.stdout, "2\n")
        p = self.run_e("local t = {} for i = 1, 3 do t[i] = i * i end return t")
        self.assertEqual(p.stdout, "{ 1, 4, 9 }\n")
        p = self.run_e('error("boom")', check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "sluice: error: (command line):1: boom\n")  # no "[C]: in function 'error'"
        p = self.run_e("for", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("expected near <eof>", p.stderr)
        p = self.run_e('run("echo", {fail = true})', check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("echo was asked to fail", p.stderr)
        # an input is no handler: error(nil) and a stray yield name the code
        p = self.run_e("error(nil)", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "sluice: error: error(nil): the code raised no message\n")
        p = self.run_e("coroutine.yield()", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("sluice: error: coroutine.yield() called outside a coroutine the "
                                            "code created: the code must not yield its task itself"), p.stderr)
        self.assertNotIn("handler", p.stderr)

    def test_e_interrupted_exits_with_the_signals_status(self):
        # 130 for Ctrl-C, as a shell says it; a SIGTERM or a hang-up exited 130 too
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with self.subTest(sig.name):
                def interrupt(proc):
                    self.assertEqual(self.read_line(proc), "ready\n")
                    proc.send_signal(sig)
                code, _, err = self.while_running(["repl", "-e", 'print("ready") sluice.sleep(600)'], interrupt,
                                                  env=self.repl_env())
                self.assertEqual(code, 128 + sig, err)

    def test_signals_ignored_at_start_stay_ignored(self):
        # as in exec and run: under nohup a hang-up (or a signal a shell's
        # background job starts with ignored) neither stops the input nor ends
        # the REPL; SIGHUP ended it with 129
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with self.subTest(sig.name):
                def signal_it(proc):
                    self.assertEqual(self.read_line(proc), "ready\n")
                    proc.send_signal(sig)
                code, out, err = self.while_running(["repl", "-e", 'print("ready") sluice.sleep(3) return "slept"'],
                                                    signal_it, env=self.repl_env(), ignore=(sig,))
                self.assertEqual((code, out), (0, '"slept"\n'), err)

    def test_a_run_whose_claim_came_back_too_late_is_given_back(self):
        # as in `sluice run`: a claim answered after the fence's share of the
        # lease does not start its run, which goes back to its job
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry
        self.trace_effects()
        self.slow_claims("trace", 1.5)
        p = self.sluice("repl", "-e", 'run("trace", {})', env=self.repl_env({"SLUICE_LEASE_SECONDS": "1"}),
                        check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"run \S+ \(trace\) not started: its claim came back \d+\.\d s after it was "
                                   r"sent, too late for its 1 s lease .*; the run was given back to its job")
        self.assertNotIn("started\n", p.stderr)
        self.assert_given_back("trace")
        self.assertEqual(self.count("public.trace_effects"), 0)

    def test_errors_keep_only_a_telling_traceback(self):
        # a traceback that says more than the message stays (without the REPL's frames)
        p = self.run_e('local function f()\n  error("deep")\nend\nf()', check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.splitlines(), [
            "sluice: error: (command line):2: deep", "stack traceback:",
            "\t[C]: in function 'error'", "\t(command line):2: in local 'f'",
            "\t(command line):4: in main chunk"])
        p = self.sluice("repl", env=self.repl_env(), input="\nerror('x')\n", check=False)
        self.assertEqual(p.stderr, "sluice: error: stdin:2: x\n")
        p = self.sluice("repl", env=self.repl_env(), input="nosuch\n", check=False)
        self.assertEqual(p.stderr, "sluice: error: stdin:1: unknown global 'nosuch'\n")

    def test_an_error_at_the_callers_level_names_the_input(self):
        # the REPL returns an expression's values without making its call a tail
        # call: an error raised at the caller's level (error(msg, 2)) names the
        # input's line, not the REPL's evaluator in repl.lua
        for code, message in [
            ("sluice.spawn(42)", "sluice.spawn: expected a function, got a number"),
            ("1,\n  sluice.wait(42)", "sluice.wait: expected a task from sluice.spawn"),
            ("sluice.db.transaction(function()\n  local r = sluice.db.transaction(print) return r\nend)",
             "sluice.db.transaction: already inside a transaction"),
        ]:
            p = self.run_e(code, check=False)
            self.assertEqual(p.returncode, 1, code)
            line = 2 if "\n" in code else 1
            self.assertTrue(p.stderr.startswith(f"sluice: error: (command line):{line}: {message}"),
                            p.stderr)
            self.assertNotIn("repl.lua", p.stderr)

    def test_script_on_stdin(self):
        p = self.sluice("repl", env=self.repl_env(),
                        input="local x = 20\nprint('half')\nreturn x * 2\n")
        self.assertEqual(p.stdout, "half\n40\n")
        p = self.sluice("repl", env=self.repl_env(), input="error('bad script')\n", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad script", p.stderr)


if __name__ == "__main__":
    harness.main()
