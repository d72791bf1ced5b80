#!/usr/bin/env python3
"""The spine end to end: queue → serve → recorded runs, concurrency on one thread,
failures that stay inside their run, foreground runs, brands, and bad input that
changes nothing. Real binary, real Postgres."""

import json
import os
import re
import select
import tempfile
import signal
import socket
import subprocess
import threading
import time

import harness
import pgfixture


class ListenHold(harness.ClusterProxy):
    """A proxy (harness.ClusterProxy) that holds back the daemon's LISTEN (and
    what its client sends after it) until release is set: listen_sent is set
    when the client has sent it. With answers, the LISTEN on `channel` goes
    through and what the server sends that connection from then on is held
    instead (in answers)."""

    def __init__(self, db_url, channel="sluice_jobs", answers=False):
        self.MARKER = f'LISTEN "{channel}"'.encode()
        self.hold_answers = answers
        self.answers = b""
        self.listen_sent = threading.Event()
        self.release = threading.Event()
        super().__init__(db_url)

    def _pump(self, client, server):
        held = None  # from the client, from the LISTEN's message on, while held back
        answering = False  # the server's answers to this client are held (answers)
        try:
            while not self.closing:
                readable, _, _ = select.select([client, server], [], [], 0.05)
                if held is not None and self.release.is_set():
                    server.sendall(held)
                    held = None
                if answering and self.release.is_set():
                    client.sendall(self.answers)  # all at once, as one read
                    answering = False
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is server and answering:
                        self.answers += data
                    elif s is server:
                        client.sendall(data)
                    elif self.hold_answers and self.MARKER in data and not self.listen_sent.is_set():
                        server.sendall(data)
                        answering = True
                        self.listen_sent.set()
                    elif held is not None:
                        held += data
                    elif self.MARKER in data and not self.release.is_set():
                        # its message: Parse ('P', length, the unnamed statement's
                        # empty name, the text) or a simple Query ('Q', length, text)
                        at = data.index(self.MARKER)
                        start = at - 6 if data[at - 6:at - 5] == b"P" else at - 5
                        server.sendall(data[:start])
                        held = data[start:]
                        self.listen_sent.set()
                    else:
                        server.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()


class Stall(harness.ClusterProxy):
    """A proxy (harness.ClusterProxy) that leaves the connections it accepts
    with numbers in `stalled` (1 the first) unanswered, open and silent, as a
    hung server or a network dropping its packets would; the others go
    through. accepted counts them."""

    def __init__(self, db_url, stalled):
        self.stalled = set(stalled)
        self.accepted = 0
        self.lock = threading.Lock()
        super().__init__(db_url)

    def _pump(self, client, server):
        with self.lock:
            self.accepted += 1
            stalled = self.accepted in self.stalled
        try:
            while not self.closing:
                readable, _, _ = select.select([client, server], [], [], 0.05)
                if stalled:
                    continue  # nothing read, nothing passed on
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (server if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()


class Blackhole:
    """A loopback port whose connections never complete, as a host that drops
    packets: its listening queue is kept full, so the kernel drops the
    handshake of every further connection."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))  # fills the queue

    def close(self):
        self.filler.close()
        self.listener.close()


def max_overlap(intervals):
    """The largest number of [start, end) intervals open at one instant."""
    events = []
    for s, e in intervals:
        events.append((s, 1))
        events.append((e, -1))
    events.sort(key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


class Spine(harness.SluiceTest):

    # -------------------------------------------------------------- happy path

    def test_queue_serve_completes_with_logs(self):
        job = self.sluice("queue", "echo", "--params", '{"message": "hello there"}').stdout.strip()
        self.assertRegex(job, r"^[0-9a-f-]{36}$")
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"],
                         "active")
        with self.serve("--concurrency", "2"):
            self.wait_jobs_done(1)
        run = self.one(f"SELECT * FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
        self.assertEqual(run["status"], "completed")
        self.assertEqual(run["attempt_number"], 1)
        self.assertEqual(run["trigger_source"], "manual")
        self.assertIn("echo: hello there", run["logs"])
        self.assertEqual(run["result"]["message"], "hello there")
        self.assertIsNotNone(run["started_at"])
        self.assertIsNotNone(run["completed_at"])
        self.assertRegex(run["handler_version"], r"^[0-9a-f]{16}$")
        self.assertEqual(run["parameters"]["message"], "hello there")
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"],
                         "completed")
        # registry synced from the handler files
        jt = self.one("SELECT * FROM sluice.job_types WHERE name = 'echo'")
        self.assertEqual(jt["label"], "Echo")
        self.assertEqual(jt["default_params"]["message"], "hello")

    def test_logs_of_a_long_run_are_recorded_as_it_goes(self):
        job = self.sluice("queue", "chatty").stdout.strip()
        with self.serve():
            self.wait_for(lambda: "step 1" in (self.scalar(
                f"SELECT logs FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}' "
                f"AND status = 'running'") or ""), 20, "the first line was not recorded while running")
            self.wait_jobs_done(1)
        logs = self.scalar(f"SELECT logs FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
        lines = [l.split(" ", 1)[1] for l in logs.splitlines()]
        self.assertEqual(lines, ["step 1 — naïve ünïcode", "step 2", "done"])

    def test_logs_follow_a_job_from_before_its_run_to_its_end(self):
        job = self.sluice("queue", "chatty", "--params", '{"pause": 5}').stdout.strip()
        follow = subprocess.Popen([harness.pgfixture.sluice_bin(), "logs", "--follow", job[:8]],
                                  env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: follow.poll() is None and follow.kill())
        with self.serve():
            first = follow.stdout.readline()  # ends at the run's end at the latest
            self.assertIn("step 1 — naïve ünïcode", first)
            # printed while the run was still going (its other steps take 10 s)
            self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                         f"WHERE scheduled_job_id = '{job}'"), "running")
            out, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 0, err)
        lines = [l.split(" ", 1)[1] for l in (first + out).splitlines()]
        self.assertEqual(lines, ["step 1 — naïve ünïcode", "step 2", "done"])
        # times as the daemon's log and `queue --at` write them
        self.assertRegex(err, rf"job {job[:8]} has no run yet \(active, due "
                              r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\): waiting for one\n")
        self.assertRegex(err, r"run [0-9a-f]{8} \(attempt 1\) completed in ")
        # without --follow: the log as recorded, the same lines
        again = self.sluice("logs", job)
        self.assertEqual(again.stdout, first + out)

    def test_logs_follow_a_one_time_job_through_its_retries(self):
        job = self.sluice("queue", "slow", "--params", '{"seconds": 3}', "--max-retries", "1").stdout.strip()
        with self.serve():
            proc = self.sluice("logs", "-f", job, check=False, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertEqual([l.split(" ", 1)[1] for l in proc.stdout.splitlines()],
                         ["sleeping 3.0s", "timed out after 2s"] * 2)
        self.assertRegex(proc.stderr, r"run [0-9a-f]{8} \(attempt 1\) failed after .*: timed out after 2s\n"
                                      r"sluice: attempt 2 (is due at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
                                      r"|has started): following it\n")
        self.assertTrue(proc.stderr.endswith(f"sluice: job {job[:8]} failed\n"), proc.stderr)

    def test_logs_follow_a_retry_that_ran_between_two_reads(self):
        # the retry started, and ended, while the first run's end was being
        # read: the job is completed by then, and it is the retry that says so
        job = self.sluice("queue", "echo", "--max-retries", "1").stdout.strip()
        worker = "00000000-0000-4000-8000-000000000001"
        first = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_job_runs SET logs = E'one: failing\\n' "
                                f"WHERE id = '{first}'")
        follow = subprocess.Popen([harness.pgfixture.sluice_bin(), "logs", "--follow", job],
                                  env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: follow.poll() is None and follow.kill())
        self.assertEqual(follow.stdout.readline(), "one: failing\n")  # it follows the first run
        pgfixture.psql(self.db, f"""
            SELECT sluice.finish_run('{first}', 'failed', NULL, 'boom', '', true, NULL, NULL);
            UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}';
            SELECT sluice.finish_run(run_id, 'completed', NULL, NULL, E'two: done\\n', false, NULL, NULL)
            FROM sluice.claim_jobs('{worker}', 10, 600);""")
        out, err = follow.communicate(timeout=60)
        self.assertEqual((follow.returncode, out), (0, "two: done\n"), err)
        self.assertRegex(err, r"run [0-9a-f]{8} \(attempt 1\) failed.*: boom\n"
                              r"sluice: attempt 2 has started: following it\n"
                              r"sluice: run [0-9a-f]{8} \(attempt 2\) completed")
        self.assertTrue(err.endswith(f"sluice: job {job[:8]} completed\n"), err)

    def follow(self, job):
        proc = subprocess.Popen([harness.pgfixture.sluice_bin(), "logs", "--follow", job],
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def test_logs_follow_after_run_now_follows_the_run_it_asked_for(self):
        # a recurring job with a run behind it, made due by run-now while no
        # worker runs: the follow waits for the new run, where it printed the
        # old one's log, said "completed" and ended before the new run began
        job = self.sluice("schedule", "echo", "--cron", "0 3 1 1 *",
                          "--params", '{"message": "the first"}').stdout.strip()
        self.sluice("jobs", "run-now", job)
        with self.serve():
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'completed'"), 30,
                          "the first run did not complete")
        self.sluice("jobs", "edit", job, "--params", '{"message": "the second"}')
        self.sluice("jobs", "run-now", job)
        follow = self.follow(job)
        said = follow.stderr.readline()  # before any worker runs the job
        self.assertIn(f"job {job[:8]} has no run in flight (active, due ", said)
        with self.serve():
            out, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 0, err)
        self.assertEqual([l.split(" ", 1)[1] for l in out.splitlines()], ["echo: the second"], err)
        self.assertIn(f"job {job[:8]} is recurring (active): its next run is due at ", err)

    def test_logs_follow_a_failed_job_run_again_from_its_first_attempt(self):
        job = self.sluice("queue", "echo", "--params", '{"fail": true}', "--max-retries", "1").stdout.strip()
        with self.serve():
            self.wait_jobs_done(1)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "failed")
        self.sluice("jobs", "run-now", job)  # its retries counted afresh
        follow = self.follow(job)
        with self.serve():
            out, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 1, err)
        # the two new runs, not the old attempt 2 and an "attempt 3" that never was
        self.assertRegex(err, r"run [0-9a-f]{8} \(attempt 1\) failed after .*\n"
                              r"sluice: attempt 2 (is due at .*|has started): following it\n"
                              r"sluice: run [0-9a-f]{8} \(attempt 2\) failed after .*\n")
        self.assertNotIn("attempt 3", err)
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 4)
        self.assertEqual(out.count("echo: hello"), 2, out)
        self.assertTrue(err.endswith(f"sluice: job {job[:8]} failed\n"), err)

    def paused_in_its_run(self, job):
        """Follows the slow job `job`, pausing it while its first run is in
        flight; returns the follow once it has said it waits for attempt 2."""
        follow = self.follow(job)
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'"), 30,
                      "the run did not start")
        self.sluice("jobs", "pause", job)
        self.assertIn("has no run yet", follow.stderr.readline())
        first = follow.stderr.readline()  # the run timed out
        self.assertRegex(first, r"run [0-9a-f]{8} \(attempt 1\) failed after .*: timed out after 2s")
        then = follow.stderr.readline()  # it was "job … paused", and the follow ended
        self.assertRegex(then, r"^sluice: attempt 2 is due at .* once the job is resumed: following it$")
        self.assertIsNone(follow.poll())
        return follow

    def test_logs_follow_a_one_time_job_paused_during_its_run_through_resume(self):
        # paused while its run was in flight, the job keeps its retry for the
        # resume: the follow goes on, as for a job paused while waiting for it
        job = self.sluice("queue", "slow", "--params", '{"seconds": 3}', "--max-retries", "1").stdout.strip()
        with self.serve():
            follow = self.paused_in_its_run(job)
            self.sluice("jobs", "resume", job)
            out, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 1, err)
        self.assertEqual([l.split(" ", 1)[1] for l in out.splitlines()],
                         ["sleeping 3.0s", "timed out after 2s"] * 2)
        self.assertTrue(err.endswith(f"sluice: job {job[:8]} failed\n"), err)

    def test_logs_follow_ends_with_a_job_cancelled_between_its_runs(self):
        job = self.sluice("queue", "slow", "--params", '{"seconds": 3}', "--max-retries", "1").stdout.strip()
        with self.serve():
            follow = self.paused_in_its_run(job)
            self.sluice("jobs", "cancel", job)
            out, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 1, err)
        # how the job ended, as after its last run: not an error "with no run to follow"
        self.assertEqual(err, f"sluice: job {job[:8]} cancelled\n")
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 1)

    def test_logs_follow_says_when_no_worker_fails_a_run_whose_lease_expired(self):
        # the worker is killed mid-run and none is left to fail its run: the
        # follow says so (as health --check calls its dataset stuck), then goes
        # on once a worker's rescue fails the run and its retry runs
        job = self.sluice("queue", "chatty", "--params", '{"pause": 30}').stdout.strip()
        err_file = tempfile.NamedTemporaryFile("w+", prefix="sluice-follow-", suffix=".err")
        self.addCleanup(err_file.close)
        follow = subprocess.Popen([harness.pgfixture.sluice_bin(), "logs", "--follow", job], env=self.env(),
                                  stdout=subprocess.PIPE, stderr=err_file, text=True)
        self.addCleanup(lambda: follow.poll() is None and follow.kill())

        def err():
            with open(err_file.name) as f:
                return f.read()
        d = self.serve()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "logs LIKE '%step 1%'"), 30,
                      "the run did not start")
        d.kill()
        pgfixture.psql(self.db, "UPDATE sluice.scheduled_job_runs SET lease_expires_at = "
                                "'2026-01-02T03:04:05Z' WHERE status = 'running'")
        said = (r"\nsluice: run [0-9a-f]{8}'s lease expired at 2026-01-02T03:04:05Z and no worker has "
                r"failed it: is any worker running and reaching the database\? \(waiting for one\)\n")
        self.wait_for(lambda: re.search(said, err()), 30, "the follow waited in silence for a worker")
        self.assertIsNone(follow.poll())
        with self.serve():
            self.wait_for(lambda: "following it" in err(), 30, "the rescue's retry was not followed")
            self.sluice("jobs", "cancel", job)
            follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 1, err())
        self.assertRegex(err(), said + r"sluice: run [0-9a-f]{8} \(attempt 1\) failed after .*: worker lost: "
                                       r"lease expired at 2026-01-02T03:04:05Z\n"
                                       r"sluice: attempt 2 (is due at .*|has started): following it\n")
        self.assertEqual(err().count("no worker has failed it"), 1, err())  # once, of the lost run only
        self.assertTrue(err().endswith(f"sluice: job {job[:8]} cancelled\n"), err())

    def test_logs_of_a_run_show_control_characters_and_refuse_bad_ids(self):
        self.sluice("run", "echo", "--params", '{"message": "red \\u001b[31m text"}')
        run = self.scalar("SELECT id FROM sluice.scheduled_job_runs")
        out = self.sluice("logs", run[:6]).stdout
        self.assertIn("echo: red ^[[31m text", out)
        self.assertNotIn("\x1b", out)
        for args, message in [(["logs"], "usage: sluice logs RUN_ID|JOB_ID [--follow]"),
                              (["logs", "nope"], "logs: 'nope' is not a run or job id"),
                              (["logs", "ffffffff"], "logs: no run or job with id 'ffffffff'"),
                              (["logs", run, "--tail"], "logs: unknown option '--tail'"),
                              (["logs", run, run], "logs: one id at a time")]:
            proc = self.sluice(*args, check=False)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(message, proc.stderr, args)
        job = self.sluice("queue", "echo", "--at", "2099-01-01T00:00:00Z").stdout.strip()
        proc = self.sluice("logs", job)
        self.assertEqual((proc.stdout, proc.stderr), ("", f"sluice: job {job[:8]} has no runs yet\n"))
        self.sluice("jobs", "cancel", job)
        proc = self.sluice("logs", "--follow", job, check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(f"logs: job {job[:8]} is cancelled, with no run to follow", proc.stderr)

    def test_sql_function_queue_and_notify_pickup(self):
        # the slow poll is 60 s: only LISTEN/NOTIFY can make this run promptly
        with self.serve("--poll", "60") as d:
            self.wait_listening()
            job = self.scalar("SELECT sluice.queue_one_time_job(NULL, 'echo', '{\"message\":\"sql\"}')")
            self.wait_for(lambda: self.count("sluice.scheduled_jobs", f"id = '{job}' AND status = 'completed'"),
                          20, "a job queued through SQL was not picked up through NOTIFY")
        self.assertEqual(self.one(f"SELECT trigger_source FROM sluice.scheduled_jobs WHERE id = '{job}'")
                         ["trigger_source"], "api")

    def test_a_job_queued_while_the_listen_is_answered_is_picked_up(self):
        # the pool told the worker to look for jobs as the LISTEN connection
        # opened, before its LISTENs were answered: a job queued in between
        # (its NOTIFY sent before the LISTEN took effect) waited for the slow
        # poll. The LISTEN is held back here until the job is queued.
        proxy = ListenHold(self.db)
        try:
            with self.serve("--poll", "60", env=self.env({"DATABASE_URL": proxy.url})):
                self.assertTrue(proxy.listen_sent.wait(30), "the daemon sent no LISTEN")
                job = self.sluice("queue", "echo", "--params", '{"message": "held"}').stdout.strip()
                proxy.release.set()
                self.wait_for(lambda: self.count("sluice.scheduled_jobs",
                                                  f"id = '{job}' AND status = 'completed'"),
                              20, "a job queued before the LISTEN was answered waited for the poll")
        finally:
            proxy.close()

    def test_a_cancel_read_with_the_answer_to_a_listen_stops_its_run(self):
        # a notification that reaches the LISTEN connection in the same read as
        # the answer to its statement is taken into libpq as that answer is
        # read: delivered then, not when the socket is next readable (the run
        # would go on until its next lease renewal). The answer to LISTEN
        # sluice_cancel is held here until a cancel's notification is behind it.
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 3600}').stdout.strip()
        run = f"scheduled_job_id = '{job}' AND status = "
        proxy = ListenHold(self.db, "sluice_cancel", answers=True)
        try:
            with self.serve("--lease", "600", env=self.env({"DATABASE_URL": proxy.url})):
                self.assertTrue(proxy.listen_sent.wait(30), "the daemon sent no LISTEN")
                self.wait_for(lambda: self.count("sluice.scheduled_job_runs", run + "'running'") == 1,
                              30, "the run did not start")
                self.wait_for(lambda: harness.pgfixture.psql(
                    self.db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND query = 'LISTEN \"sluice_cancel\"' AND state = 'idle'") == "1",
                              30, "the LISTEN did not run")
                self.sluice("jobs", "cancel", job)
                self.wait_for(lambda: b"sluice_cancel" in proxy.answers, 30, "no notification came")
                proxy.release.set()
                self.wait_for(lambda: self.count("sluice.scheduled_job_runs", run + "'cancelled'") == 1,
                              30, "the cancel waited for the lease renewal")
        finally:
            proxy.close()

    def test_sql_function_rejects_unknown_type(self):
        self.sluice("queue", "noop")  # migrates and syncs the registry
        proc = __import__("subprocess").run(
            ["psql", self.db, "-X", "-Atc", "SELECT sluice.queue_one_time_job(NULL, 'ecko', '{}')"],
            capture_output=True, text=True, env=harness.pgfixture.clean_env())
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("unknown job type 'ecko' — did you mean 'echo'?", proc.stderr)
        self.assertIn("known job types:", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", "job_type <> 'noop'"), 0)

    def test_many_runs_wait_at_once(self):
        self.sluice("queue", "sleep", "--params", '{"seconds": 0.2}')
        harness.pgfixture.psql(self.db, """
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT 'sleep', '{"seconds": 0.2}', now() FROM generate_series(1, 199)""")
        with self.serve("--concurrency", "50"):
            self.wait_jobs_done(200, timeout=90)
        rows = self.sql("""SELECT extract(epoch FROM started_at) AS s, extract(epoch FROM completed_at) AS e
                           FROM sluice.scheduled_job_runs WHERE status = 'completed'""")
        self.assertEqual(len(rows), 200)
        overlap = max_overlap([(r["s"], r["e"]) for r in rows])
        self.assertGreaterEqual(overlap, 40, f"only {overlap} sleeps overlapped")
        self.assertLessEqual(overlap, 50, "more runs at once than --concurrency allows")

    # -------------------------------------------------------------- failures

    def test_raising_handler_fails_its_run_and_the_daemon_goes_on(self):
        bad = self.sluice("queue", "echo", "--params", '{"fail": true, "permanent": true}').stdout.strip()
        good = self.sluice("queue", "echo", "--params", '{"message": "after"}').stdout.strip()
        with self.serve("--concurrency", "1"):
            self.wait_jobs_done(2)
        run = self.one(f"SELECT * FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{bad}'")
        self.assertEqual(run["status"], "failed")
        self.assertIn("echo was asked to fail permanently", run["error_message"])
        self.assertIn("stack traceback:", run["logs"])
        self.assertIn("echo.lua:", run["logs"])
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{bad}'")["status"], "failed")
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{good}'")["status"],
                         "completed")

    def test_retry_then_terminal_failure(self):
        job = self.sluice("queue", "echo", "--params", '{"fail": true}').stdout.strip()
        with self.serve():
            self.wait_jobs_done(1, timeout=60)
        runs = self.sql(f"SELECT attempt_number, status FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number")
        # echo declares max_retries = 1: two attempts, then failed for good
        self.assertEqual([(r["attempt_number"], r["status"]) for r in runs], [(1, "failed"), (2, "failed")])
        job_row = self.one(f"SELECT status, last_error, next_run_at FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual(job_row["status"], "failed")
        self.assertIn("echo was asked to fail", job_row["last_error"])
        self.assertIsNone(job_row["next_run_at"])

    def test_sql_error_comes_back_to_the_handler(self):
        self.sluice("queue", "sql_probe", "--params", '{"sql": "select * from no_such_table"}')
        with self.serve():
            self.wait_jobs_done(1)
        run = self.one("SELECT status, result, logs FROM sluice.scheduled_job_runs")
        self.assertEqual(run["status"], "completed")
        self.assertFalse(run["result"]["ok"])
        self.assertIn('relation "no_such_table" does not exist', run["result"]["err"])

    def test_typed_values_from_sql(self):
        proc = self.sluice("run", "sql_probe", "--json", "--params", json.dumps({
            "sql": "select 1 as i, 2.5::float8 as f, true as b, 'x' as s, null as n, '{\"a\":[1,2]}'::jsonb as j"}))
        out = json.loads(proc.stdout)
        row = out["result"]["rows"][0]
        self.assertEqual(row["i"], 1)
        self.assertEqual(row["f"], 2.5)
        self.assertIs(row["b"], True)
        self.assertEqual(row["s"], "x")
        self.assertIsNone(row["n"])
        self.assertEqual(row["j"], {"a": [1, 2]})
        # an empty query is an error that says so (it was an empty message)
        out = json.loads(self.sluice("run", "sql_probe", "--json", "--params", '{"sql": "  "}').stdout)
        self.assertEqual(out["result"], {"ok": False, "err": "the query is empty"})

    def test_sigterm_lets_runs_finish(self):
        # the runs wait for a lock the test holds: they are in flight at the
        # SIGTERM however slow the machine, and end only once it is released
        with self.advisory_lock(4242):
            gated = json.dumps({"sql": "SELECT pg_advisory_xact_lock_shared(4242)::text AS waited"})
            for _ in range(3):
                self.sluice("queue", "sql_probe", "--params", gated)
            d = self.serve("--concurrency", "3", "--lease", "3")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 3
                          and self.lock_waiters(4242) > 0, 30, "runs did not start")
            d.signal(signal.SIGTERM)
            d.wait_log("stopping: no new claims; waiting for runs in flight", timeout=30)
            self.assertIn("running=true", d.log())
            # it keeps them: their leases are renewed (every second) after the signal
            signalled = self.scalar("SELECT clock_timestamp()")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"status = 'running' AND heartbeat_at > '{signalled}'") == 3, 30,
                          "the runs were not kept after the SIGTERM")
            self.assertIsNone(d.proc.poll(), "the daemon must wait for its runs")
        status = d.wait(timeout=30)
        self.assertEqual(status, 0, d.log())
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'completed'"), 3, d.log())
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'completed'"), 3)
        self.assertEqual([r["result"] for r in self.sql("SELECT result FROM sluice.scheduled_job_runs")],
                         [{"ok": True, "rows": [{"waited": ""}]}] * 3)
        self.assertIsNotNone(self.one("SELECT stopped_at FROM sluice.workers WHERE kind = 'serve'")["stopped_at"])

    def test_handlers_holding_every_connection_do_not_stop_lease_renewals(self):
        # six runs wait on a lock in a query: three hold the three connections
        # handlers may have (pool_size 4), three wait for one. The fourth is the
        # daemon's: their leases (3 s) are renewed while they wait, well past a
        # lease, and none is stopped as lost
        with self.advisory_lock(4343):
            gated = json.dumps({"sql": "SELECT pg_advisory_xact_lock_shared(4343)::text AS waited"})
            for _ in range(6):
                self.sluice("queue", "sql_probe", "--params", gated)
            d = self.serve("--concurrency", "6", "--lease", "3")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 6
                          and self.lock_waiters(4343) >= 3, 30, "runs did not start")
            held = self.scalar("SELECT clock_timestamp() + interval '4 seconds'")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"status = 'running' AND heartbeat_at > '{held}'") == 6, 30,
                          "the runs' leases were not renewed while handlers held the connections")
            self.assertGreaterEqual(self.lock_waiters(4343), 3)  # still held all along
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'completed'") == 6, 30,
                      "the runs did not complete")
        self.assertEqual(d.stop(timeout=30), 0, d.log())
        self.assertNotIn("lease", " ".join(r["error_message"] or "" for r in
                                           self.sql("SELECT error_message FROM sluice.scheduled_job_runs")))
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 6)

    def test_a_query_result_past_the_memory_cap_fails_that_query_only(self):
        # 64 rows of 1 MB against a 32 MB cap: the pool stops reading the result
        # at the cap (libpq would otherwise hold all of it, however large, in the
        # daemon's memory); the query fails, the daemon and the pool carry on
        env = self.env({"SLUICE_MEMORY_LIMIT_MB": "32"})
        big = self.sluice("queue", "sql_probe", "--params", json.dumps(
            {"sql": "SELECT repeat('x', 1000000) AS s FROM generate_series(1, 64)"})).stdout.strip()
        d = self.serve("--concurrency", "1", env=env)
        done = f"status = 'completed' AND scheduled_job_id = '{{}}'"
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", done.format(big)) == 1, 60)
        small = self.sluice("queue", "sql_probe", "--params", json.dumps(
            {"sql": "SELECT 41 + 1 AS answer FROM generate_series(1, 3)"})).stdout.strip()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", done.format(small)) == 1, 60)
        self.assertEqual(d.stop(timeout=30), 0, d.log())
        result = lambda job: self.scalar(f"SELECT result FROM sluice.scheduled_job_runs "
                                         f"WHERE scheduled_job_id = '{job}'")
        failed = json.loads(result(big))
        self.assertIs(failed["ok"], False)
        self.assertRegex(failed["err"], r"^the query's result passed 32 MB, the memory cap "
                                        r"\(memory_limit_mb\), before its end: select less")
        self.assertEqual(json.loads(result(small)), {"ok": True, "rows": [{"answer": 42}] * 3})
        self.assertNotIn("database connection failed", d.log())  # the pool closed it on purpose

    def exec_capped(self, script, one_connection=False, check=True):
        """`sluice exec` of a script under a 16 MB memory cap (and with one
        pooled connection)."""
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write("pool_size = 1\n" if one_connection else "")
            conf.flush()
            return self.sluice("exec", "-", input=script, check=check, env=self.env(
                {"SLUICE_MEMORY_LIMIT_MB": "16", "SLUICE_CONFIG": conf.name}))

    def test_a_transaction_whose_connection_was_closed_at_the_cap_does_not_commit(self):
        # the pool closes a pinned connection when a query's result passes the
        # cap: the transaction is gone (its insert rolled back), and the
        # connection must stay down until released, or the task's next
        # statements would run on a reopened one outside any transaction and
        # COMMIT there would read as success. Another task's query, sent after
        # the close, is what would reopen it: the transaction goes on only once
        # that query has been answered.
        script = """
local db = sluice.db
assert(db.query("CREATE TABLE tx_lost_probe (x int)"))
local big_err, answered
local other = sluice.spawn(function()
  while big_err == nil do sluice.sleep(0.01) end
  local rows = assert(db.query("SELECT 1 AS one"))
  answered = true
  return rows
end)
local ok, err = db.transaction(function()
  assert(db.query("INSERT INTO tx_lost_probe VALUES (1)"))
  local rows, e = db.query("SELECT repeat('x', 1000) AS v FROM generate_series(1, 100000)")
  big_err = e or false
  while not answered do sluice.sleep(0.01) end
  db.query("INSERT INTO tx_lost_probe VALUES (2)")
  return true
end)
assert(sluice.wait(other))
local rows = assert(db.query("SELECT count(*) AS n FROM tx_lost_probe"))
-- true only when the big query failed, and at the cap
local capped = big_err and big_err:find("the memory cap", 1, true) ~= nil
print(tostring(ok) .. "|" .. tostring(capped) .. "|" .. rows[1].n)
"""
        out = self.exec_capped(script).stdout.strip()
        self.assertEqual(out, "nil|true|0")

    def test_a_query_past_the_cap_does_not_fail_the_queries_waiting_behind_it(self):
        # one connection: the second task's query waits for the one the first
        # task's oversized result holds. The pool closes that connection on
        # purpose; the waiting query is not failed with the other's error but
        # runs on the connection opened again.
        script = """
local db = sluice.db
assert(db.query("SELECT 1"))
local big = sluice.spawn(function()
  local rows, err = db.query("SELECT repeat('x', 1000) AS v FROM generate_series(1, 100000)")
  return err
end)
local small = sluice.spawn(function()
  local rows, err = db.query("SELECT 2 AS two")
  return rows and rows[1].two or err
end)
local err, two = sluice.wait(big, small)
print(err ~= nil and err:find("the memory cap", 1, true) ~= nil, two)
"""
        out = self.exec_capped(script, one_connection=True).stdout.strip()
        self.assertEqual(out, "true\t2")

    def test_a_transaction_given_up_mid_query_frees_its_connection_when_it_is_closed(self):
        # the task holding a transaction goes away while its query runs: the
        # pool queues the ROLLBACK and unpins the connection once that is
        # done. The query passes the cap first, and the pool closes the
        # connection: given up by its owner, it must not stay pinned (down
        # for good, with one connection the script's next query would never
        # run).
        script = """
local db = sluice.db
assert(db.query("SELECT 1"))
local middle = sluice.spawn(function()
  sluice.spawn(function()
    db.transaction(function()
      return db.query([[SELECT repeat('x', 1000) AS v FROM generate_series(1, 100000) g
                        WHERE g % 100 <> 0 OR pg_sleep(0.01) IS NOT NULL]])
    end)
  end)
  sluice.sleep(0.2)
  error("given up")
end)
assert(not pcall(sluice.wait, middle))
sluice.sleep(3)
local rows = assert(db.query("SELECT 3 AS three"))
print(rows[1].three)
"""
        proc = self.exec_capped(script, one_connection=True, check=False)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "3"), proc.stderr)

    def test_copy_from_stdin_or_to_stdout_fails_that_query_only(self):
        # libpq hands out a COPY result on every call for the next result and
        # is never busy until the copy's data is sent or read: the pool spun
        # on it for good, and the whole process with it. Refused instead, and
        # with one connection the next query runs on the one opened again.
        script = """
local db = sluice.db
assert(db.query("CREATE TABLE copy_probe (x int)"))
local out = {}
for _, sql in ipairs({ "COPY (SELECT 1) TO STDOUT", "COPY copy_probe FROM STDIN" }) do
  local rows, err, state = db.query(sql)
  out[#out + 1] = tostring(rows) .. " " .. state .. " " .. err
end
out[#out + 1] = assert(db.query("SELECT 2 AS two"))[1].two
print(table.concat(out, "|"))
"""
        proc = self.exec_capped(script, one_connection=True, check=False)
        refused = ("nil 0A000 sluice.db does not run COPY FROM STDIN or TO STDOUT: use INSERT or "
                   "SELECT (COPY to or from a server file is not affected)")
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, f"{refused}|{refused}|2"),
                         proc.stderr)

    def test_a_transaction_a_query_left_open_is_rolled_back_before_the_next(self):
        # sluice.db.query("BEGIN") leaves its connection inside a transaction;
        # handed on as it was, every later statement there (other runs', the
        # daemon's own) ran inside it, never committed, and once one failed
        # all of them failed with 25P02. With one connection the next query
        # is on the same one: it runs on its own, after a ROLLBACK.
        script = """
local db = sluice.db
assert(db.query("CREATE TABLE open_probe (x int)"))
assert(db.query("BEGIN"))
assert(db.query("INSERT INTO open_probe VALUES (1)"))
local _, failed = db.query("SELECT 1/0")
local rows, err, state = db.query("SELECT count(*) AS n FROM open_probe")
print(failed, rows and rows[1].n or err .. " " .. tostring(state))
"""
        proc = self.exec_capped(script, one_connection=True, check=False)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "division by zero\t1"), proc.stderr)
        self.assertIn("a statement left a transaction open on a shared connection; rolled back",
                      proc.stderr)

    def test_a_connection_a_server_never_answers_is_given_up_at_connect_timeout(self):
        # libpq leaves connect_timeout to the caller of PQconnectPoll, and the
        # pool applied none: a connection opened again to a server that
        # accepted it and never answered (a hung server or proxy, packets
        # dropped) held every query waiting for it for good. Now the attempt
        # ends at the URL's connect_timeout, the query waiting fails with why,
        # and the next attempt opens.
        proxy = Stall(self.db, stalled=[2])
        self.addCleanup(proxy.close)
        script = """
local db = sluice.db
assert(db.query("SELECT 1"))
db.query("SELECT pg_terminate_backend(pg_backend_pid())")
local started = sluice.now()
local rows, err, state = db.query("SELECT 2 AS two")
print(tostring(rows), err, tostring(state), sluice.now() - started >= 1.9)
rows = assert(db.query("SELECT 3 AS three"))
print(rows[1].three)
"""
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write("pool_size = 1\n")
            conf.flush()
            proc = self.sluice("exec", "-", input=script, check=False, timeout=60, env=self.env(
                {"DATABASE_URL": proxy.url + "&connect_timeout=2", "SLUICE_CONFIG": conf.name}))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines(),
                         ["nil\ttimeout expired (connect_timeout)\tnil\ttrue", "3"], proc.stderr)
        self.assertEqual(proxy.accepted, 3)

    def test_a_host_that_never_answers_is_passed_over_at_connect_timeout(self):
        # with two hosts, libpq's own connect gives the first connect_timeout
        # and goes on to the second; driven by sluice, start-up and the pool
        # waited on the first for good (or failed the attempt at the timeout
        # and began again with the first host, never reaching the second)
        hole, proxy = Blackhole(), Stall(self.db, stalled=[])
        self.addCleanup(hole.close)
        self.addCleanup(proxy.close)
        url = (f"postgresql://postgres@127.0.0.1:{hole.port},127.0.0.1:"
               f"{proxy.url.split('@127.0.0.1:')[1]}&connect_timeout=2")
        script = """
local db = sluice.db
assert(db.query("SELECT 1"))
db.query("SELECT pg_terminate_backend(pg_backend_pid())")
local started = sluice.now()
local rows, err = db.query("SELECT 2 AS two")
print(rows and rows[1].two or err, sluice.now() - started >= 1.9)
"""
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write("pool_size = 1\n")
            conf.flush()
            started = time.monotonic()
            proc = self.sluice("exec", "-", input=script, check=False, timeout=60, env=self.env(
                {"DATABASE_URL": url, "SLUICE_CONFIG": conf.name}))
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "2\ttrue"), proc.stderr)
        self.assertGreaterEqual(time.monotonic() - started, 3.8)  # 2 s at the first host, twice
        self.assertEqual(proxy.accepted, 2)

    def test_what_a_query_sets_in_its_session_ends_with_it(self):
        # a handler's SET, set_config(), SET ROLE, LISTEN, temporary table,
        # advisory lock, held cursor or PREPARE (direct or in a DO block)
        # stayed in its pooled session and came with the connection to
        # whatever ran there next: other runs' queries, and the daemon's own
        # statements (a role with no rights, a statement_timeout, another
        # search_path). With one
        # connection the next query is on the same one: it starts as the
        # connection opened; inside a transaction a setting lasts to its end.
        script = """
local db = sluice.db
assert(db.query("DROP ROLE IF EXISTS session_probe_role"))
assert(db.query("CREATE ROLE session_probe_role"))
local function state()
  return assert(db.query([[
    SELECT current_user AS who, current_setting('search_path') AS path,
           current_setting('TimeZone') AS zone, current_setting('statement_timeout') AS timeout,
           (SELECT count(*) FROM pg_listening_channels()) AS listening,
           to_regclass('pg_temp.session_probe') IS NOT NULL AS temp,
           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
               AND pid = pg_backend_pid()) AS locks,
           (SELECT count(*) FROM pg_cursors WHERE name = 'session_probe') AS cursors,
           (SELECT count(*) FROM pg_prepared_statements
               WHERE name = 'session_probe') AS prepared]]))[1]
end
local function show(s)
  return table.concat({ s.who, s.path, s.zone, s.timeout, s.listening, tostring(s.temp),
                        s.locks, s.cursors, s.prepared }, " ")
end
local out = { show(state()) }
for _, sql in ipairs({
  "SET search_path = public", "SET TIME ZONE 'Asia/Tokyo'",
  "SELECT set_config('statement_timeout', '1234', false)", "LISTEN session_probe",
  "CREATE TEMP TABLE session_probe (x int)", "SELECT pg_advisory_lock(4242)",
  "DECLARE session_probe CURSOR WITH HOLD FOR SELECT 1", "PREPARE session_probe AS SELECT 1",
  "DO $$ BEGIN EXECUTE 'PREPARE session_probe AS SELECT 1'; END $$",
  "SET ROLE session_probe_role" }) do
  assert(db.query(sql))
  out[#out + 1] = show(state())
end
-- a PREPARE outlives the failure of the statement that ran it
assert(not db.query("DO $$ BEGIN EXECUTE 'PREPARE session_probe AS SELECT 1'; RAISE 'after it'; END $$"))
out[#out + 1] = show(state())
out[#out + 1] = assert(db.transaction(function()
  assert(db.query("SET search_path = public"))
  assert(db.query("PREPARE session_probe AS SELECT 1"))
  return show(state())
end))
out[#out + 1] = show(state())
assert(db.query("PREPARE session_probe AS SELECT 1"))
assert(db.query("DROP ROLE session_probe_role"))
print(table.concat(out, "\\n"))
"""
        # roles are the cluster's, which test files running beside this one share
        script = script.replace("session_probe_role", f"session_probe_spine_{os.getpid()}")
        proc = self.exec_capped(script, one_connection=True, check=False)
        clean = "postgres sluice,public UTC 0 0 false 0 0 0"
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip().splitlines(),
                         [clean] * 12 + ["postgres public UTC 0 0 false 0 0 1", clean],
                         proc.stderr)
        self.assertNotIn("cannot reset", proc.stderr)

    def test_a_stop_while_start_up_waits_for_the_database_exits_0(self):
        # before it served, SIGTERM killed the daemon by its default action
        # (status -15) and SIGINT likewise, where a stop exits 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            with tempfile.TemporaryDirectory(prefix="sluice-nodb-") as nowhere:
                env = self.env({"DATABASE_URL": f"postgresql://postgres@/sluice?host={nowhere}"})
                d = self.serve(env=env)
                d.wait_log("start-up failed; retrying in 2s")
                d.signal(sig)
                status = d.wait(timeout=10)
                self.assertEqual(status, 0, d.log())
                self.assertIn("sluice stopped: asked to before start-up succeeded", d.log())

    def test_why_start_up_failed_is_a_line_of_the_log(self):
        # the reason was printed as "sluice: error: …" over two lines, which is
        # neither logfmt nor JSON, in the middle of the daemon's log
        with tempfile.TemporaryDirectory(prefix="sluice-nodb-") as nowhere:
            env = self.env({"DATABASE_URL": f"postgresql://postgres@/sluice?host={nowhere}"})
            d = self.serve(env=dict(env, SLUICE_LOG_FORMAT="json"))
            d.wait_log("start-up failed; retrying in 2s")
            self.assertEqual(d.stop(timeout=10), 0, d.log())
            lines = [json.loads(line) for line in d.log().splitlines()]
            errors = [x["msg"] for x in lines if x["level"] == "error"]
            self.assertGreaterEqual(len(errors), 2, d.log())
            self.assertTrue(errors[0].startswith(f'cannot connect to the database: connection to server on socket "{nowhere}'),
                            errors[0])

    def test_what_the_database_says_outside_a_result_is_a_line_of_the_log(self):
        # libpq printed it bare on stderr, amid the daemon's log lines: "FATAL:
        # terminating connection due to administrator command" when the server
        # ended a connection, "WARNING:  …" from a handler's statement
        env = self.env({"SLUICE_LOG_FORMAT": "json"})
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            db = self.scalar("SELECT current_database()")
            self.scalar(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        f"WHERE datname = '{db}' AND application_name = 'sluice'")
            d.wait_log("terminating connection due to administrator command")
            warn = json.dumps({"sql": "DO $$ BEGIN RAISE WARNING 'hello from sql'; END $$"})
            self.sluice("queue", "sql_probe", "--params", warn, env=env)
            d.wait_log("hello from sql")
        lines = [json.loads(line) for line in d.log().splitlines()]
        said = [(x["level"], x["severity"], x["message"]) for x in lines if x["msg"] == "the database says"]
        self.assertIn(("warn", "WARNING", "hello from sql"), said)
        # a session the server ends: its reason is the one of the connection
        # failure that follows, said once, not once per connection ended
        failed = [(x["level"], x["error"]) for x in lines if x["msg"].startswith("database connection failed")]
        self.assertEqual(failed, [("warn", "terminating connection due to administrator command")], d.log())
        self.assertNotIn("FATAL", [s for _, s, _ in said])

    def test_a_session_ended_under_a_statement_fails_it_as_the_connection_lost(self):
        # the server's FATAL then comes as the statement's own error result: it
        # was passed on whole ("FATAL:  terminating connection …" and libpq's
        # lines after it) to the handler and to the log
        env = self.env({"SLUICE_LOG_FORMAT": "json"})
        sql = "SELECT pg_sleep(30) AS slept"
        with self.serve(env=env) as d:
            d.wait_log("sluice serving")
            job = self.sluice("queue", "sql_probe", "--params", json.dumps({"sql": sql}), env=env).stdout.strip()
            active = f"datname = current_database() AND query = '{sql}' AND state = 'active'"
            self.wait_for(lambda: self.count("pg_stat_activity", active) == 1, 30)
            self.scalar(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {active}")
            self.wait_jobs_done(1)
            # the connection is opened again for what comes next
            self.sluice("queue", "sql_probe", env=env)
            self.wait_jobs_done(2)
        lines = [json.loads(line) for line in d.log().splitlines()]
        failed = [(x["level"], x["error"]) for x in lines if x["msg"].startswith("database connection failed")]
        self.assertEqual(failed, [("warn", "terminating connection due to administrator command")], d.log())
        result = self.one(f"SELECT result FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")["result"]
        self.assertEqual(result, {"ok": False, "err": "terminating connection due to administrator command"})
        self.assertEqual(self.count("sluice.scheduled_job_runs", "result->>'ok' = 'true'"), 1)

    def test_grace_period_cancels_runs_as_shutdown_and_they_are_retried(self):
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 30}').stdout.strip()
        d = self.serve("--grace", "0.5")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
        self.assertEqual(d.stop(timeout=30), 0, d.log())
        run = self.one("SELECT status, error_message FROM sluice.scheduled_job_runs")
        self.assertEqual((run["status"], run["error_message"]), ("failed", "shutdown"))
        j = self.one(f"SELECT status, next_run_at IS NOT NULL AS due FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual((j["status"], j["due"]), ("active", True))

    # -------------------------------------------------------------- foreground runs

    def test_run_exit_codes_and_recording(self):
        ok = self.sluice("run", "echo", "--params", '{"message": "fg"}', check=False)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("echo: fg", ok.stderr)  # log lines stream
        self.assertEqual(json.loads(ok.stdout)["message"], "fg")
        bad = self.sluice("run", "echo", "--params", '{"fail": true}', check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("echo was asked to fail", bad.stderr)
        runs = self.sql("SELECT r.status, r.trigger_source, j.status AS job_status FROM sluice.scheduled_job_runs r "
                        "JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id ORDER BY r.created_at")
        self.assertEqual([(r["status"], r["trigger_source"]) for r in runs],
                         [("completed", "manual"), ("failed", "manual")])
        self.assertEqual(runs[0]["job_status"], "completed")
        # the failed one's job keeps its retry policy, and the user is told so,
        # in the words of the daemon's log (echo: one retry)
        self.assertEqual(runs[1]["job_status"], "active")
        self.assertRegex(bad.stderr, r"failed after \d+\.\d\ds: .*echo was asked to fail; then retry attempt 2 of 2 "
                                     r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n")
        self.assertRegex(bad.stderr, r"a worker \(sluice serve\) runs the job then; `sluice jobs cancel [0-9a-f]{8}`")
        final = self.sluice("run", "echo", "--json", "--params", '{"fail": true, "permanent": true}', check=False)
        self.assertEqual((json.loads(final.stdout)["job_status"], json.loads(final.stdout)["then"]),
                         ("failed", "job failed: permanent error"))
        self.assertNotIn("sluice serve", final.stderr)
        self.assertIsNone(json.loads(self.sluice("run", "echo", "--json").stdout)["then"])
        unknown = self.sluice("run", "ecco", check=False)
        self.assertEqual(unknown.returncode, 2)
        self.assertIn("did you mean 'echo'", unknown.stderr)

    def test_exec_arguments_and_exit_status(self):
        # what `sluice exec --help` now says: arg, print to stdout, #!, 0/1/2
        self.assertIn("arg[1]", self.sluice("exec", "--help").stdout)
        ok = self.sluice("exec", "-", "a b", "c", input="#!/usr/bin/env sluice\nprint(#arg, arg[1], arg[2], arg[0])\n")
        self.assertEqual(ok.stdout, "2\ta b\tc\t-\n")  # arg[0] the script, as lua's
        raised = self.sluice("exec", "-", input='error("boom")\n', check=False)
        self.assertEqual(raised.returncode, 1)
        # the script from "-" is named stdin, as the REPL and lua name it, not "-"
        self.assertIn("sluice: error: stdin:1: boom\n", raised.stderr)
        self.assertIn("stack traceback", raised.stderr)
        self.assertIn("\tstdin:1: in main chunk", raised.stderr)
        broken = self.sluice("exec", "-", input="x =\n", check=False)
        self.assertEqual(broken.returncode, 2)
        self.assertEqual(broken.stderr, "sluice: error: stdin:2: unexpected symbol near <eof>\n")
        # stdin that cannot be read said "cannot read -"; the REPL says stdin too
        # (it said "standard input")
        fd = os.open("/", os.O_RDONLY)
        try:
            for args, code in ((["exec", "-"], 2), (["repl"], 1)):
                proc = subprocess.run([pgfixture.sluice_bin(), *args], env=self.env(), stdin=fd,
                                      capture_output=True, text=True, timeout=60)
                self.assertEqual((proc.returncode, proc.stderr),
                                 (code, "sluice: error: cannot read stdin: Is a directory\n"), args)
        finally:
            os.close(fd)

    def test_output_that_cannot_be_written_fails_the_command(self):
        # a full disk under a listing or a script's output: the command said
        # nothing and exited 0, as if the output were whole. Output flushed as
        # it is written (print in exec and the REPL, the REPL's values) said
        # only "write error": the reason was lost by the exit's flush
        with open("/dev/full", "w") as full:
            for args in [["cron", "next", "0 0 * * *", "-n", "5"], ["exec", "-"], ["repl", "-e", 'print("x")'],
                         ["repl", "-e", "return 1"]]:
                with self.subTest(" ".join(args)):
                    proc = subprocess.run([pgfixture.sluice_bin(), *args], env=self.env(), input='print("x")\n',
                                          stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
                    self.assertEqual(proc.returncode, 1, proc.stderr)
                    self.assertIn("sluice: error: cannot write the output: No space left on device", proc.stderr)

    def test_exec_print_writes_every_byte(self):
        # print() outside a run writes the string as Lua's does: a NUL byte
        # neither ends the line nor drops the values after it
        out = self.sluice("exec", "-", input='print("a\\0b", "c")\nprint("after")\n').stdout
        self.assertEqual(out, "a\0b\tc\nafter\n")

    def test_a_signal_cancels_an_exec_script_as_a_run_is_cancelled(self):
        # Ctrl-C, SIGTERM or a hang-up killed the process: the script's __close
        # handlers never ran. Now the script is cancelled (its pending call
        # stops, its handlers run, its transaction is rolled back) and the exit
        # status says which signal
        script = """
local guard <close> = setmetatable({}, { __close = function() print("closed") end })
sluice.db.transaction(function()
  assert(sluice.db.query("CREATE TABLE public.exec_signal (n int)"))
  print("ready")
  sluice.sleep(600)
end)
"""
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
            f.write(script)
            f.flush()
            for sig, name in [(signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "terminated (SIGTERM)"),
                              (signal.SIGHUP, "hung up (SIGHUP)")]:
                with self.subTest(name):
                    def interrupt(proc):
                        self.assertEqual(self.read_line(proc), "ready\n")
                        proc.send_signal(sig)
                    code, out, err = self.while_running(["exec", f.name], interrupt)
                    self.assertEqual((code, out), (128 + sig, "closed\n"), err)
                    self.assertIn(f"sluice: exec: {name}: the script was cancelled", err)
                    self.assertNotIn("stack traceback", err)
                    self.assertEqual(self.scalar("SELECT count(*) FROM pg_class WHERE relname = 'exec_signal'"), "0")

    def test_a_signal_stops_the_query_an_exec_script_waits_for_in_the_server(self):
        # the script was cancelled and the process exited, but its query went
        # on in the server (the cancel request, sent by a thread of its own,
        # was lost with the process), holding its transaction's locks
        script = """
sluice.db.transaction(function()
  assert(sluice.db.query("LOCK TABLE sluice.scheduled_jobs"))
  print("ready")
  sluice.db.query("SELECT pg_sleep(600)")
end)
"""
        self.sluice("jobs")  # the schema
        sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query = 'SELECT pg_sleep(600)'")
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
            f.write(script)
            f.flush()
            def interrupt(proc):
                self.assertEqual(self.read_line(proc), "ready\n")
                self.wait_for(lambda: self.scalar(sleeping) == "1", 30, "the query did not start")
                proc.send_signal(signal.SIGINT)
            code, out, err = self.while_running(["exec", f.name], interrupt)
        self.assertEqual(code, 128 + signal.SIGINT, err)
        self.wait_for(lambda: self.scalar(sleeping) == "0", 30, "the query still runs in the server")
        self.scalar("BEGIN; LOCK TABLE sluice.scheduled_jobs NOWAIT; COMMIT")

    def test_exec_keeps_the_signals_ignored_at_its_start(self):
        # as `sluice run` and the REPL do: under nohup (or a signal a shell's
        # background job starts with ignored) the script goes on
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
            f.write('print("ready")\nsluice.sleep(3)\nprint("slept")\n')
            f.flush()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                with self.subTest(sig.name):
                    def signal_it(proc):
                        self.assertEqual(self.read_line(proc), "ready\n")
                        proc.send_signal(sig)
                    code, out, err = self.while_running(["exec", f.name], signal_it, ignore=(sig,))
                    self.assertEqual((code, out), (0, "slept\n"), err)

    def test_exec_limits_name_the_code_not_a_handler(self):
        # a script (and a task it spawns) stopped by a limit is no handler's run
        for name, script in [("budget", "while true do end"),
                             ("budget in a task", "sluice.wait(sluice.spawn(function() while true do end end))"),
                             ("memory", "local t = {} while true do t[#t + 1] = string.rep('x', 4096) .. #t end")]:
            with self.subTest(name):
                p = self.sluice("exec", "-", input=script + "\n", check=False,
                                env=self.env({"SLUICE_MEMORY_LIMIT_MB": "64"}))
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertRegex(p.stderr, r"(?m)^sluice: error: (instruction budget exceeded: the code ran too long"
                                           r"|memory limit exceeded: the Lua state's cap was reached while this "
                                           r"code allocated)")
                self.assertNotIn("handler", p.stderr)
                self.assertNotIn("this run", p.stderr)

    def test_exec_errors_name_the_code_not_a_handler(self):
        # error(nil) and a stray coroutine.yield() in a script (or a task it
        # spawns) said "the handler", which a script has none of
        nil_said = "error(nil): the code raised no message"
        yield_said = ("coroutine.yield() called outside a coroutine the code created: the code must not "
                      "yield its task itself; only sluice calls suspend it")
        for script, said in [("error(nil)", f"sluice: error: {nil_said}"),
                             ("error(sluice.permanent(nil))", f"sluice: error: {nil_said}"),
                             ("sluice.wait(sluice.spawn(function() error(nil) end))", nil_said),
                             ("coroutine.yield()", f"sluice: error: {yield_said}"),
                             ("sluice.wait(sluice.spawn(function() coroutine.yield() end))", yield_said)]:
            with self.subTest(script):
                p = self.sluice("exec", "-", input=script + "\n", check=False)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(said, p.stderr)
                self.assertNotIn("handler", p.stderr)

    def test_run_without_brand_for_brand_required_type(self):
        # queued: refused with a hint; run in the foreground: allowed (legacy direct mode)
        q = self.sluice("queue", "needs_brand", check=False)
        self.assertEqual(q.returncode, 2)
        self.assertIn("needs a brand", q.stderr)
        self.assertIn("sluice run needs_brand", q.stderr)
        # with parameters that are wrong too: both said at once (the parameters
        # were said alone, and the brand only on the next try)
        for cmd in (["queue", "needs_brand"], ["schedule", "needs_brand", "--cron", "@daily"]):
            both = self.sluice(*cmd, "--params", '{"nope": 1}', check=False)
            self.assertEqual(both.returncode, 2, both.stderr)
            self.assertIn("job type 'needs_brand' needs a brand (--brand NAME), and its parameters: unknown parameter 'nope'", both.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        # run in the foreground without one, it runs, but its dataset is the
        # brand's: no platform freshness row, and the run's log says so
        r = self.sluice("run", "needs_brand", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.count("sluice.dataset_status"), 0)
        self.assertEqual(self.scalar("SELECT status FROM sluice.scheduled_job_runs"), "completed")
        self.assertIn("run without a brand: the freshness of brand_things is kept per brand and is left as it was",
                      self.scalar("SELECT logs FROM sluice.scheduled_job_runs"))
        # with a brand it is kept as usual
        self.sluice("brands", "add", "Acme")
        self.sluice("run", "needs_brand", "--brand", "Acme")
        ds = self.one("SELECT b.name, s.dataset_key, s.last_status, s.records_affected "
                      "FROM sluice.dataset_status s JOIN sluice.brands b ON b.id = s.brand_id")
        self.assertEqual((ds["name"], ds["dataset_key"], ds["last_status"], ds["records_affected"]),
                         ("Acme", "brand_things", "completed", 3))
        # a platform row an older version made is not updated by a later run
        pgfixture.psql(self.db, "INSERT INTO sluice.dataset_status (brand_id, dataset_key, last_status, "
                                "source_job_id) SELECT NULL, 'brand_things', 'failed', NULL")
        self.sluice("run", "needs_brand")
        self.assertEqual(self.scalar("SELECT last_status FROM sluice.dataset_status WHERE brand_id IS NULL"),
                         "failed")

    # -------------------------------------------------------------- brands

    def test_brands(self):
        a = self.sluice("brands", "add", "Acme").stdout.strip()
        again = self.sluice("brands", "add", "Acme")
        self.assertEqual(again.stdout.strip(), a)
        self.assertIn("already exists", again.stderr)
        self.sluice("brands", "add", "Globex")
        out = self.sluice("brands", "list", "--json").stdout
        self.assertNotIn('" :', out)  # the same compact JSON as every --json
        self.assertEqual(out.count("\n"), 1, out)  # one line, as every --json (not one per brand)
        listed = json.loads(out)
        self.assertEqual([b["name"] for b in listed], ["Acme", "Globex"])
        self.assertEqual(sorted(listed[0]), ["created_at", "id", "name"])
        job = self.sluice("queue", "needs_brand", "--brand", "Acme").stdout.strip()
        self.assertEqual(self.one(f"SELECT brand_id FROM sluice.scheduled_jobs WHERE id = '{job}'")["brand_id"], a)
        job2 = self.sluice("queue", "needs_brand", "--brand", a).stdout.strip()
        self.assertEqual(self.one(f"SELECT brand_id FROM sluice.scheduled_jobs WHERE id = '{job2}'")["brand_id"], a)

    def test_brand_names_that_read_as_something_else_are_refused(self):
        acme = self.sluice("brands", "add", "Acme").stdout.strip()
        for name, why in (("--json", "cannot start with '-' (it would read as an option)"),
                          ("-x", "cannot start with '-'"),
                          (" Acme", "cannot start or end with white space"),
                          ("Acme ", "cannot start or end with white space"),
                          ("Ac\nme", "cannot contain control characters"),
                          ("Ac\tme", "cannot contain control characters"),
                          ("Ac\x1b[2Jme", "cannot contain control characters"),
                          ("Ac\u009bme", "cannot contain control characters"),
                          ("(platform)", "a brand cannot be named (platform)"),
                          (acme, "cannot be a UUID"),
                          ("6F1C0000-0000-4000-8000-000000000000", "cannot be a UUID")):
            proc = self.sluice("brands", "add", name, check=False)
            self.assertEqual(proc.returncode, 2, f"{name!r}: {proc.stdout}{proc.stderr}")
            self.assertEqual(proc.stdout, "")
            self.assertIn(f"sluice: error: brands add: ", proc.stderr)
            self.assertIn(why, proc.stderr, repr(name))
            # and the database refuses them from any client
            literal = "'" + name.replace("'", "''") + "'"
            sql = __import__("subprocess").run(
                ["psql", self.db, "-X", "-Atc", f"INSERT INTO sluice.brands (name) VALUES ({literal})"],
                capture_output=True, text=True, env=harness.pgfixture.clean_env())
            self.assertNotEqual(sql.returncode, 0, repr(name))
            self.assertIn(why, sql.stderr, repr(name))
            self.assertNotIn("\x1b", sql.stderr)
        self.assertEqual([b["name"] for b in json.loads(self.sluice("brands", "--json").stdout)], ["Acme"])
        # names that merely contain these are fine
        for name in ("O'Brien & Sons", "Acme (EU)", "Acme-Werke", "Ünïcode Co"):
            self.sluice("brands", "add", name)
        # a name already there is kept: rows from before the rule still resolve
        self.scalar("ALTER TABLE sluice.brands DISABLE TRIGGER brands_check_name; "
                    "INSERT INTO sluice.brands (name) VALUES (' Old'); "
                    "ALTER TABLE sluice.brands ENABLE TRIGGER brands_check_name")
        self.scalar("UPDATE sluice.brands SET created_at = now() WHERE name = ' Old'")

    def test_brand_names_from_before_the_rule_reach_no_terminal_raw(self):
        # a name stored before brands_check_name may hold control characters:
        # every listing shows them as show does (^[, ^J), never as themselves
        # (an ESC recoloured the terminal, a new line broke the rows)
        self.sluice("migrate")
        self.scalar("ALTER TABLE sluice.brands DISABLE TRIGGER brands_check_name")
        bad = self.scalar("INSERT INTO sluice.brands (name) VALUES (E'Ac\\x1b[31mme\\nX\\u009b') RETURNING id").splitlines()[0]
        self.scalar("ALTER TABLE sluice.brands ENABLE TRIGGER brands_check_name")
        shown = "Ac^[[31mme^JXM-^["
        self.sluice("run", "needs_brand", "--brand", bad)
        self.sluice("queue", "needs_brand", "--brand", bad, "--at", "+1h")
        self.scalar(f"SELECT sluice.add_competitor('{bad}', 'Rival')")

        def assert_visible(text, what):
            self.assertIn(shown, text, what)
            self.assertEqual([c for c in text if (ord(c) < 0x20 and c != "\n") or 0x80 <= ord(c) < 0xa0], [],
                             what)
            self.assertNotIn("\nX", text, what)  # the name's new line did not end its row

        listed = self.sluice("brands", "list").stdout
        self.assertEqual(listed, f"{bad}  {shown}\n")
        assert_visible(self.sluice("competitors", "list").stdout, "competitors list")
        for view in ("jobs", "runs", "health"):
            out = self.sluice(view, env=self.env({"COLUMNS": "300"})).stdout
            assert_visible(out, view)
        # the known brands in the hint of an unknown one
        proc = self.sluice("queue", "needs_brand", "--brand", "Nobody", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn(f"known brands: {shown}", proc.stderr)
        assert_visible(proc.stderr, "the hint")

    # -------------------------------------------------------------- bad input

    def assert_rejected(self, args, *fragments):
        before = self.count("sluice.scheduled_jobs") if self.scalar(
            "SELECT to_regclass('sluice.scheduled_jobs') IS NOT NULL") == "t" else 0
        proc = self.sluice(*args, check=False)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        lines = [l for l in proc.stderr.splitlines() if l.startswith("sluice: error:")]
        self.assertEqual(len(lines), 1, proc.stderr)
        for f in fragments:
            self.assertIn(f, proc.stderr)
        self.assertEqual(proc.stdout, "")
        if self.scalar("SELECT to_regclass('sluice.scheduled_jobs') IS NOT NULL") == "t":
            self.assertEqual(self.count("sluice.scheduled_jobs"), before)

    def test_bad_input_changes_nothing(self):
        self.sluice("brands", "add", "Acme")
        self.assert_rejected(["queue", "ecoh"], "unknown job type 'ecoh'", "did you mean 'echo'",
                             "known: ", "echo, ", "noop, ", "sleep, ")
        self.assert_rejected(["queue", "echo", "--params", '{"message": "x",}'], "not valid JSON", "character")
        self.assert_rejected(["queue", "echo", "--params", '[1, 2]'], "must be a JSON object")
        self.assert_rejected(["queue", "echo", "--params", '[]'], "must be a JSON object")  # as SQL says
        self.assert_rejected(["queue", "echo", "--params", '{"mesage": "x"}'],
                             "unknown parameter 'mesage' — did you mean 'message'?")
        self.assert_rejected(["queue", "sleep", "--params", '{"seconds": -1}'], "seconds")
        self.assert_rejected(["queue", "echo", "--brand", "Nobody"], "unknown brand 'Nobody'", "known brands: Acme")
        self.assert_rejected(["queue", "echo", "--priority", "soon"], "--priority")
        self.assert_rejected(["queue", "echo", "--at", "+5x"], "--at")
        self.assert_rejected(["queue", "echo", "--at", "not a time"], "not a time")
        self.assert_rejected(["frobnicate"], "unknown command 'frobnicate'")
        # a misspelt global option was called an unknown command
        self.assert_rejected(["--hnadlers", "/tmp", "types"], "unknown option '--hnadlers'")
        # an empty global option was taken: --db "" as libpq's defaults (another
        # server), --home "" and --config "" as the default ones
        for flag in ("--db", "--home", "--config", "--handlers", "--lua", "--log-format"):
            self.assert_rejected([flag, "", "queue", "echo"], f"sluice: error: {flag} needs a value, not an empty one")
            self.assert_rejected([f"{flag}=", "queue", "echo"], f"sluice: error: {flag} needs a value, not an empty one")
        # config printed its usage without saying what was wrong, and took
        # anything after --json; brands list printed its usage
        self.assert_rejected(["config", "--bogus"], "config: unknown option '--bogus'")
        self.assert_rejected(["config", "--json", "extra"], "config: unexpected argument 'extra'")
        self.assert_rejected(["brands", "list", "--bogus"], "brands list: unknown option '--bogus'")
        self.assert_rejected(["brands", "--json", "extra"], "brands list: unexpected argument 'extra'")
        self.assert_rejected(["db", "stop", "now"], "db stop: unexpected argument 'now'")
        # migrate said "unknown argument '--bogus' to migrate" and printed its whole usage
        self.assert_rejected(["migrate", "--bogus"], "migrate: unknown option '--bogus' (see `sluice migrate --help`)")
        self.assert_rejected(["migrate", "now"], "migrate: unexpected argument 'now'")
        # run called every unknown option one "or missing value", which it reports apart
        self.assert_rejected(["run", "echo", "--bogus"], "run: unknown option '--bogus' (see `sluice run --help`)")
        self.assert_rejected(["run", "echo", "--brand"], "run: --brand needs a value")
        # -e without its code, or twice, was an "unexpected argument '-e'"
        self.assert_rejected(["repl", "-e"], "repl: -e needs CODE")
        self.assert_rejected(["repl", "-e", "1", "-e", "2"], "repl: -e given twice")
        # an empty value (an unset shell variable, often) is not taken as "none"
        self.assert_rejected(["queue", "echo", "--brand", ""], "queue: --brand needs a value, not an empty one",
                             "leave --brand out")
        self.assert_rejected(["schedule", "echo", "--cron", ""], "schedule: --cron needs a value, not an empty one")
        self.assert_rejected(["runs", "--brand", ""], "runs: --brand needs a value, not an empty one", "--platform")
        self.assert_rejected(["exec", "/nonexistent/script.lua"],
                             "cannot read /nonexistent/script.lua: No such file or directory")
        self.assert_rejected(["exec", "/"], "cannot read /: Is a directory")
        check = self.sluice("--handlers", "/nonexistent/handlers", "check", check=False)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn("/nonexistent/handlers: cannot open the handler directory: No such file or directory",
                      check.stdout + check.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        # a blank brand name is refused before it reaches the table's check
        self.assert_rejected(["brands", "add", "  "], "a brand's name cannot be empty or only spaces")
        self.assertEqual(self.count("sluice.brands"), 1)

    def test_a_home_that_is_a_file_or_a_zone_that_is_a_region(self):
        # "cannot read config file …/sluice.conf: Not a directory", "not found"
        with tempfile.NamedTemporaryFile() as f:
            self.assert_rejected(["--home", f.name, "types"],
                                 f"sluice: error: the home {f.name} (--home) is not a directory")
            proc = self.sluice("types", env=self.env({"SLUICE_HOME": f.name}), check=False)
            self.assertEqual(proc.returncode, 2)
            self.assertIn(f"the home {f.name} (SLUICE_HOME) is not a directory", proc.stderr)
            self.assert_rejected(["--home", f.name + "/sub", "types"],
                                 "is not a directory: a part of its path is a file")
        for args in (["cron", "next", "0 9 * * *", "--tz", "Europe"],
                     ["schedule", "noop", "--cron", "0 9 * * *", "--tz", "Europe"]):
            self.assert_rejected(args, '"Europe" is not a time zone but a region directory',
                                 "give a zone as Region/City, e.g. Europe/Berlin")

    def test_a_time_without_a_zone_is_utc(self):
        # it was read in the session's zone: the server's or the database's
        # default, here New York's
        self.sluice("queue", "noop")  # the schema
        zone = "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET TimeZone = %%L', current_database(), '%s'); END $$"
        self.scalar(zone % "America/New_York")
        self.addCleanup(self.scalar, zone % "UTC")
        self.assertEqual(self.scalar("SHOW TimeZone"), "America/New_York")
        for at, due in (("2026-12-01", "2026-12-01T00:00:00Z"),
                        ("2026-12-01 09:00", "2026-12-01T09:00:00Z"),
                        ("2026-07-01T09:00:00", "2026-07-01T09:00:00Z"),
                        ("2026-12-01T09:00:00Z", "2026-12-01T09:00:00Z"),
                        ("2026-12-01T09:00:00+02:00", "2026-12-01T07:00:00Z")):
            proc = self.sluice("queue", "noop", "--at", at)
            job = proc.stdout.strip()
            self.assertEqual(self.scalar(
                "SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                f"FROM sluice.scheduled_jobs WHERE id = '{job}'"), due, at)
            self.assertEqual(proc.stderr, f"due: {due}\n", at)

    def test_at_takes_a_real_time_or_a_delay(self):
        self.sluice("queue", "noop")  # the schema
        # Postgres' special words are no point in time; a job due at infinity
        # broke `jobs` and `show` for everyone
        for word in ("infinity", "-infinity", "epoch", "now", "tomorrow", "today", "yesterday",
                     "allballs"):
            proc = self.sluice("queue", "echo", "--at", word, check=False)
            self.assertEqual(proc.returncode, 2, word)
            self.assertIn(f"--at '{word}': give a timestamp such as 2026-12-01T09:00:00Z, or a delay",
                          proc.stderr)
        for bad in ("+0x10s", "+ 5m", "+5x", "+", "+inf", "+nan", "+1e3s", "+5 m"):
            proc = self.sluice("queue", "echo", "--at", bad, check=False)
            self.assertEqual(proc.returncode, 2, bad)
            self.assertIn(f"--at '{bad}': a delay is + and a number (digits, with an optional decimal part) followed by s, m, h or d",
                          proc.stderr)
        proc = self.sluice("queue", "echo", "--at", "-5m", check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("a delay counts forward from now", proc.stderr)
        proc = self.sluice("queue", "echo", "--at", "+3651d", check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("a delay can be at most 3650d", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", "job_type = 'echo'"), 0)

        # large delays are intervals Postgres reads ("%g" made them "1e+06 seconds")
        for delay, seconds in (("+1000000s", 1000000), ("+3650d", 3650 * 86400), ("+1.5h", 5400),
                               ("+30", 30)):
            job = self.sluice("queue", "echo", "--at", delay).stdout.strip()
            ahead = float(self.scalar(f"SELECT extract(epoch FROM next_run_at - created_at) "
                                      f"FROM sluice.scheduled_jobs WHERE id = '{job}'"))
            self.assertAlmostEqual(ahead, seconds, delta=5)
        self.sluice("queue", "echo", "--at", "2026-12-01T09:00:00Z")

        # the SQL functions refuse them too, whoever calls them
        before = self.count("sluice.scheduled_jobs")
        for call in ("sluice.queue_one_time_job(NULL::text, 'noop', '{}', 'infinity')",
                     "sluice.enqueue(NULL, 'noop', '{}', '-infinity')",
                     "sluice.enqueue_many(NULL, 'noop', ARRAY['{}'::jsonb], 'infinity')",
                     "sluice.schedule_job(NULL, 'noop', '* * * * *', 'UTC', '{}', 'infinity')"):
            proc = __import__("subprocess").run(["psql", self.db, "-X", "-Atc", f"SELECT {call}"],
                                                capture_output=True, text=True,
                                                env=harness.pgfixture.clean_env())
            self.assertNotEqual(proc.returncode, 0, call)
            self.assertIn("a job must be due at a real time, not ", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), before)

        # a row that already has one (queued before 097) does not break the views
        for t in ("infinity", "-infinity"):
            self.scalar(f"INSERT INTO sluice.scheduled_jobs (job_type, next_run_at, status) "
                        f"VALUES ('noop', '{t}', 'paused')")
        table = self.sluice("jobs", "--status", "paused").stdout
        self.assertIn("infinity", table)
        self.assertIn("-infinity", table)
        job = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE next_run_at = 'infinity'")
        self.assertRegex(self.sluice("show", job).stdout, r"next run\s+infinity\n")

    def test_enqueue_many_says_what_is_wrong_with_its_input(self):
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry

        def enqueue_many(args):
            return subprocess.run(["psql", self.db, "-X", "-Atc", f"SELECT sluice.enqueue_many({args})"],
                                  capture_output=True, text=True, env=harness.pgfixture.clean_env())
        element = "invalid parameters for noop (element {}): parameters must be a JSON object, not {}"
        unknown = "unknown job type 'ecko' — did you mean 'echo'?"
        for args, message in [
                ("NULL, 'noop', NULL", "enqueue_many needs an array of parameter objects, not NULL"),
                ("NULL, 'noop', ARRAY['{}', NULL]::jsonb[]", element.format(2, "NULL")),
                ("NULL, 'noop', ARRAY['{}', '{}', '[]']::jsonb[]", element.format(3, "an array")),
                ("NULL, 'noop', ARRAY['[]']::jsonb[]", element.format(1, "an array")),
                ("NULL, 'noop', ARRAY['\"x\"']::jsonb[]", element.format(1, "a string")),
                ("NULL, 'noop', ARRAY['{}', 'null']::jsonb[]", element.format(2, "JSON null")),
                ("NULL, 'noop', ARRAY['{}', '{\"t\": \"soon\"}']::jsonb[]",
                 "invalid parameters for noop (element 2): t"),
                # an unknown type is one whatever the number of jobs, none too
                ("NULL, 'ecko', ARRAY[]::jsonb[]", unknown),
                ("NULL, 'ecko', NULL", unknown),
                ("NULL, 'ecko', ARRAY['{}']::jsonb[]", unknown),
                ("NULL, 'needs_brand', ARRAY[]::jsonb[]", "job type 'needs_brand' needs a brand")]:
            with self.subTest(args=args):
                proc = enqueue_many(args)
                self.assertNotEqual(proc.returncode, 0, proc.stdout)
                self.assertIn(f"ERROR:  {message}", proc.stderr)
                for raw in ("violates", "FOREACH", "null value in column"):
                    self.assertNotIn(raw, proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)
        # what it takes
        self.assertEqual(enqueue_many("NULL, 'noop', ARRAY[]::jsonb[]").stdout.strip(), "0")
        self.assertEqual(enqueue_many("NULL, 'noop', ARRAY['{}', '{\"t\": 5}']::jsonb[]").stdout.strip(), "2")
        self.assertEqual(self.count("sluice.scheduled_jobs", "parameters = '{\"t\": 5}'"), 1)

    def test_brands_list_by_default(self):
        acme = self.sluice("brands", "add", "Acme").stdout.strip()
        again = self.sluice("brands", "add", "Acme")
        self.assertEqual(again.stdout.strip(), acme)
        self.assertIn("already exists", again.stderr)
        for args in (["brands"], ["brands", "list"]):
            self.assertEqual(self.sluice(*args).stdout, f"{acme}  Acme\n")
        for args in (["brands", "--json"], ["brands", "list", "--json"]):
            self.assertEqual([b["name"] for b in json.loads(self.sluice(*args).stdout)], ["Acme"])
        bad = self.sluice("brands", "list", "extra", check=False)
        self.assertEqual(bad.returncode, 2)

    def test_run_whose_outcome_is_refused_is_recorded_as_failed(self):
        self.sluice("queue", "echo")  # the schema, for the trigger
        self.refuse_results("message", "refuse me", "refused result")
        proc = self.sluice("run", "echo", "--params", '{"message": "refuse me"}', check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("refused result", proc.stderr)
        self.assertIn("but its outcome could not be recorded", proc.stderr)
        # and what that failure made of its job, as for any failed run
        self.assertRegex(proc.stderr, r"it is recorded as failed instead; then retry attempt 2 of \d+ at "
                                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n")
        run = self.one("SELECT status, error_message, result FROM sluice.scheduled_job_runs "
                       "WHERE parameters ->> 'message' = 'refuse me'")
        self.assertEqual(run["status"], "failed")
        self.assertEqual(run["error_message"], "the run's outcome could not be recorded")
        self.assertIsNone(run["result"])
        out = json.loads(self.sluice("run", "echo", "--json", "--params", '{"message": "refuse me"}',
                                     check=False).stdout)
        self.assertFalse(out["recorded"])
        self.assertRegex(out["then"], r"^retry attempt 2 of ")
        self.assertTrue(json.loads(self.sluice("run", "echo", "--json").stdout)["recorded"])

    def test_dead_database(self):
        env = self.env({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"})
        proc = self.sluice("queue", "echo", env=env, check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("cannot connect to the database", proc.stderr)
        d = self.serve(env=env)
        d.wait_log("retrying", timeout=30)
        self.assertIsNone(d.proc.poll(), "serve must keep retrying, not exit")
        d.kill()
        # a script opens the database at its first sluice.db call: that call
        # raises, and the next one tries again (and raises again)
        script = """
            local ok, err = pcall(sluice.db.query, "SELECT 1")
            print(ok, err)
            print(pcall(sluice.db.query, "SELECT 2"))
            print(pcall(sluice.db.transaction, function() end))
            print("went on")
        """
        proc = self.sluice("exec", "-", env=env, input=script, check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 4, proc.stdout)
        for line in lines[:3]:
            self.assertRegex(line, r"^false\t.*sluice\.db: the database is not available$")
        self.assertEqual(lines[3], "went on")
        self.assertEqual(proc.stderr.count("cannot connect to the database"), 3, proc.stderr)

    def test_a_database_url_libpq_refuses_is_a_configuration_error(self):
        # such a URL fails every connection alike, and was taken for a database
        # that is down: serve retried it for ever, `db status` said "not
        # answering", the other commands "cannot connect" (exit 1)
        sep = "&" if "?" in self.db else "?"
        cases = [
            (self.db + sep + "sslmode=bogus", 'invalid sslmode value: "bogus"'),
            (self.db + sep + "foo=bar", 'invalid URI query parameter: "foo"'),
            ("host=/nonexistent port=1,2 dbname=x", "could not match 2 port numbers to 1 hosts"),
            ("postgresql://u:hunter2@[::1/x", 'matching "]" in IPv6 host address in URI'),
        ]
        for url, why in cases:
            env = self.env({"DATABASE_URL": url})
            for args in (("queue", "echo"), ("jobs",), ("db", "status"), ("migrate",),
                         ("exec", "-e", "print(1)"), ("repl", "-e", "1")):
                with self.subTest(url=url, command=args[0]):
                    proc = self.sluice(*args, env=env, check=False)
                    self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                    self.assertEqual(proc.stdout, "")
                    self.assertTrue(proc.stderr.startswith("sluice: error: the database URL is not valid: "),
                                    proc.stderr)
                    self.assertIn(why, proc.stderr)
                    self.assertTrue(proc.stderr.endswith(" (it comes from DATABASE_URL)\n"), proc.stderr)
                    self.assertNotIn("hunter2", proc.stderr)
            with self.subTest(url=url, command="serve"):
                d = self.serve(env=env)
                self.assertEqual(d.wait(timeout=60), 2, d.log())  # it leaves rather than retrying
                self.assertTrue(d.log().startswith("sluice: error: the database URL is not valid: "), d.log())
                self.assertIn(why, d.log())
                self.assertNotIn("retrying", d.log())
        bad = self.db + sep + "sslmode=bogus"
        # from the flag, and from the config file
        proc = self.sluice("--db", bad, "jobs", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn('sslmode value: "bogus" (it comes from --db)', proc.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write(f"# the database\ndb = {bad}\n")
            conf.flush()
            env = self.env({"SLUICE_CONFIG": conf.name}, db=False)
            proc = self.sluice("jobs", env=env, check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(f'sslmode value: "bogus" (it comes from the db setting at {conf.name}:2)', proc.stderr)
            # the value in effect is checked: the environment's replaces the file's
            self.sluice("jobs", env=dict(env, DATABASE_URL=self.db))
            # help needs no database
            self.assertIn("usage: sluice serve", self.sluice("serve", "--help", env=env).stdout)
        # valid options pass, and so does a bare database name (libpq's default server)
        self.sluice("jobs", env=self.env({"DATABASE_URL": self.db + sep + "sslmode=disable&connect_timeout=10"}))
        proc = self.sluice("jobs", env=self.env({"DATABASE_URL": "sluice_no_such_db",
                                                 "PGHOST": "/nonexistent"}), check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("cannot connect to the database", proc.stderr)

    def test_every_command_help_names_the_options_it_takes(self):
        # the options each command's parser accepts (src/cli_*.c, worker.c, repl.c,
        # migrate.c): `sluice CMD --help` names every one of them
        takes = {
            ("serve",): ["--concurrency", "-c N", "--prefetch", "--lease", "--grace", "--poll",
                         "--pidfile", "--no-watch"],
            ("queue",): ["--brand", "--params", "--at", "--priority", "--dedupe-key",
                         "--max-retries", "--if-stale"],
            ("schedule",): ["--cron", "--tz", "--brand", "--params", "--name", "--priority",
                            "--max-retries", "--dedupe-key"],
            ("run",): ["--brand", "--params", "--json"],
            ("brands",): ["add", "list", "--json"],
            ("competitors",): ["add", "add-amazon-url", "list", "--brand", "--facebook-page-id",
                               "--website", "--ad-library-url", "--amazon-url", "--json"],
            ("repl",): ["-e CODE"],
            ("migrate",): ["--status"],
            ("config",): ["--json"],
            ("db",): ["status", "start", "stop", "url"],
            ("check",): ["--json"],
            ("types",): ["--json"],
            ("health",): ["--brand", "--platform", "--type", "--check", "--json"],
            ("runs",): ["--type", "--brand", "--platform", "--status", "--recurring", "--one-time",
                        "--param", "--limit", "--json"],
            ("jobs",): ["--status", "--type", "--brand", "--platform", "--recurring", "--one-time",
                        "--param", "--limit", "--json", "cancel", "pause", "resume", "run-now", "edit"],
            ("jobs", "edit"): ["--cron", "--tz", "--params", "--priority", "--name", "--max-retries"],
            ("show",): ["--json"],
            ("logs",): ["-f", "--follow"],
            ("cron",): ["--tz", "--from", "-n N", "--count", "--json"],
            ("workers",): ["--all", "--check", "--json"],
        }
        for cmd, options in takes.items():
            out = self.sluice(*cmd, "--help").stdout
            for opt in options:
                self.assertIn(opt, out, f"`sluice {' '.join(cmd)} --help` does not name {opt}")

    def test_a_bad_libpq_variable_is_named_as_the_source(self):
        # PGSSLMODE=bogus was caught, but the error credited the URL's source
        # ("it comes from DATABASE_URL"), where nothing was wrong
        env = self.env({"PGSSLMODE": "bogus"})
        for args in (("jobs",), ("queue", "echo")):
            proc = self.sluice(*args, env=env, check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertTrue(proc.stderr.endswith(
                'invalid sslmode value: "bogus" (it comes from PGSSLMODE in the environment)\n'), proc.stderr)
        d = self.serve(env=env)
        self.assertEqual(d.wait(timeout=60), 2, d.log())
        self.assertIn("(it comes from PGSSLMODE in the environment)", d.log())
        # the URL's own sslmode is the one libpq takes: the variable is not read
        sep = "&" if "?" in self.db else "?"
        self.sluice("jobs", env=self.env({"PGSSLMODE": "bogus", "DATABASE_URL": self.db + sep + "sslmode=disable"}))
        # the URL's own bad value is still the URL's, beside a good variable
        proc = self.sluice("jobs", env=self.env({"PGSSLMODE": "disable",
                                                  "DATABASE_URL": self.db + sep + "gssencmode=bogus"}), check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("(it comes from DATABASE_URL)", proc.stderr)

    def test_settings_the_server_or_libpq_refuse_are_a_configuration_error(self):
        # a role, database or TLS setting that is refused fails every attempt
        # alike: commands said "cannot connect" (exit 1) as for a server that is
        # down, and serve waited for it for ever
        sep = "&" if "?" in self.db else "?"
        no_role = self.db.replace("postgres@", "sluice_no_such_role@")
        self.assertNotEqual(no_role, self.db)
        cases = [
            (no_role, 'role "sluice_no_such_role" does not exist', {}),
            (pgfixture.with_database(self.db, "sluice_no_such_db"), 'database "sluice_no_such_db" does not exist', {}),
            (self.db + sep + "channel_binding=require", "channel binding required", {}),
            (self.db, "GSSAPI encryption required", {"PGGSSENCMODE": "require"}),
        ]
        for url, why, extra in cases:
            env = self.env(dict(extra, DATABASE_URL=url))
            for args in (("jobs",), ("queue", "echo"), ("runs",)):
                with self.subTest(url=url, command=args[0]):
                    proc = self.sluice(*args, env=env, check=False)
                    self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                    self.assertIn(why, proc.stderr)
                    self.assertIn("a configuration problem, not an outage", proc.stderr)
                    self.assertIn("the URL from DATABASE_URL", proc.stderr)
                    self.assertNotIn("SQLSTATE", proc.stderr)
                    self.assertNotIn("LOCATION", proc.stderr)
                    if extra:
                        self.assertIn("with PGGSSENCMODE from the environment", proc.stderr)
            with self.subTest(url=url, command="exec"):  # a script's first sluice.db call connects
                proc = self.sluice("exec", "-", env=env, check=False, input='sluice.db.query("SELECT 1")\n')
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertIn("a configuration problem, not an outage", proc.stderr)
            with self.subTest(url=url, command="serve"):
                d = self.serve(env=env)
                self.assertEqual(d.wait(timeout=60), 2, d.log())  # it leaves rather than retrying
                self.assertIn(why.replace('"', '\\"'), d.log())  # logfmt quotes it
                self.assertIn("not starting: the database refuses this connection's settings", d.log())
                self.assertNotIn("retrying", d.log())
        # db status tries the connection every command opens: it said
        # "answering" (exit 0) for a role the server refuses, and "not
        # answering" for a TLS setting libpq could not meet
        proc = self.sluice("db", "status", env=self.env({"DATABASE_URL": no_role}), check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("status:     refuses this connection's settings (a configuration problem, not an "
                      'outage): connection to server on socket', proc.stdout)
        self.assertIn('role "sluice_no_such_role" does not exist', proc.stdout)
        proc = self.sluice("db", "status", check=False)
        self.assertEqual((proc.returncode, proc.stdout.splitlines()[-1]), (0, "status:     answering"))
        proc = self.sluice("db", "status", env=self.env({"DATABASE_URL": "sluice_no_such_db",
                                                       "PGHOST": "/nonexistent"}), check=False)
        self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)
        self.assertIn("status:     not answering: connection to server on socket", proc.stdout)
        # the server's message keeps its words without the code the check reads
        proc = self.sluice("--db", no_role, "jobs", check=False)
        self.assertIn('failed: FATAL:  role "sluice_no_such_role" does not exist (a configuration problem',
                      proc.stderr)
        # a server that does not answer is still an outage: exit 1, no such words
        proc = self.sluice("jobs", env=self.env({"DATABASE_URL": "sluice_no_such_db",
                                                 "PGHOST": "/nonexistent"}), check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertNotIn("configuration", proc.stderr)

    def test_a_role_refused_under_a_running_daemon_is_said_as_news_then_reminded(self):
        # the daemon serves, then its role may no longer log in: the outage's
        # first line has the server's reason for ending the session, and the
        # next one the refusal, at once, as what is now the case — it said
        # "still refuses" (down_for=0s) of a refusal never said before
        role = f"sluice_refused_{os.getpid()}"
        self.sluice("jobs")  # the schema, made by the database's owner: the role is to own nothing
        pgfixture.psql(self.db, f"CREATE ROLE {role} LOGIN SUPERUSER")
        self.addCleanup(lambda: pgfixture.psql(self.db, f"DROP ROLE IF EXISTS {role}"))
        d = self.serve("--lease", "30", env=self.env({"DATABASE_URL": self.db.replace("postgres@", f"{role}@")}))
        d.wait_log("sluice serving", 60)
        pgfixture.psql(self.db, f"ALTER ROLE {role} NOLOGIN; "
                                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        d.wait_log("refuses the connection", 60)
        pgfixture.psql(self.db, f"ALTER ROLE {role} LOGIN")
        d.wait_log("database connection back", 60)
        self.assertEqual(d.stop(), 0, d.log())
        log = d.log()
        outage = [line for line in log[log.index("database connection failed"):
                                       log.index("database connection back")].splitlines()
                  if "level=warn" in line or "retrying until it is back" in line]
        self.assertIn('retrying until it is back" error="terminating connection due to administrator command"',
                      outage[0])
        self.assertRegex(outage[1], r'msg="the database now refuses the connection; retrying" down_for=\d+s '
                                    rf'error="FATAL:  role \\"{role}\\" is not permitted to log in" '
                                    r'cause="a configuration problem, not an outage: ')
        self.assertNotIn("still refuses", outage[1])
        # reminders after it say "still", and only at their times (10 s, 30 s, …)
        for line in outage[2:]:
            self.assertIn("the database still refuses the connection; retrying", line)
            self.assertGreaterEqual(int(re.search(r"down_for=(\d+)s", line).group(1)), 9, line)

    def test_broken_handler_file_does_not_stop_the_others(self):
        import tempfile, os, shutil
        tmp = tempfile.mkdtemp(prefix="sluice-handlers-")
        try:
            with open(os.path.join(tmp, "broken.lua"), "w") as f:
                f.write("return { run = function(job) end,\n")  # syntax error
            shutil.copy(os.path.join(harness.EXAMPLES, "noop.lua"), tmp)
            env = self.env({"SLUICE_HANDLERS": tmp})
            self.sluice("queue", "noop", env=env)
            with self.serve(env=env) as d:
                self.wait_jobs_done(1)
                d.wait_log("broken.lua")
            self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'completed'"), 1)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    harness.main()
