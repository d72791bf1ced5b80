#!/usr/bin/env python3
"""Job lifecycle: leases and crash rescue, timeouts, retries and permanent
failures, recurring schedules, dedupe under concurrent enqueues, cancel / pause /
resume, retention, many workers sharing one database, and a Postgres restart
under a running daemon."""

import concurrent.futures
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
import pgfixture


class Lifecycle(harness.SluiceTest):

    def make_count_table(self):
        pgfixture.psql(self.db, "DROP TABLE IF EXISTS public.count_runs; "
                                "CREATE TABLE public.count_runs (job_id uuid, run_id uuid, "
                                "at timestamptz DEFAULT clock_timestamp())")

    def bulk(self, job_type, n, params="{}"):
        self.sluice("queue", "noop")  # migrate + registry
        pgfixture.psql(self.db, f"""
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT '{job_type}', '{params}'::jsonb || jsonb_build_object('n', g), now()
            FROM generate_series(1, {n}) g""")

    # -------------------------------------------------------------- timeouts, retries

    def test_timeout_cancels_the_run_and_retries(self):
        job = self.sluice("queue", "slow", "--params", '{"seconds": 30}').stdout.strip()
        with self.serve():
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'failed'") >= 1, 30)
        run = self.sql(f"SELECT * FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}' "
                       f"ORDER BY attempt_number")[0]
        self.assertEqual(run["error_message"], "timed out after 2s")
        self.assertIn("sleeping 30.0s", run["logs"])
        # the run ended at its timeout, before its 30 s sleep would have ended
        # (the database's clock on both ends)
        self.assertEqual(self.scalar(f"SELECT completed_at >= started_at + interval '2 s' AND "
                                     f"completed_at < started_at + interval '30 s' "
                                     f"FROM sluice.scheduled_job_runs WHERE id = '{run['id']}'"), "t")

    def test_backoff_and_attempt_numbers(self):
        job = self.sluice("queue", "slow", "--params", '{"seconds": 30}').stdout.strip()
        with self.serve():
            self.wait_jobs_done(1, timeout=60)
        runs = self.sql(f"SELECT attempt_number, started_at, completed_at FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number")
        # max_retries = 2: three attempts, then failed for good
        self.assertEqual([r["attempt_number"] for r in runs], [1, 2, 3])
        j = self.one(f"SELECT status, attempts, last_error FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual(j["status"], "failed")
        self.assertEqual(j["last_error"], "timed out after 2s")
        # the retries waited: base 0.5 s doubling, with jitter of ±25 %
        gaps = self.sql(f"""SELECT extract(epoch FROM r2.started_at - r1.completed_at) AS gap
                            FROM sluice.scheduled_job_runs r1 JOIN sluice.scheduled_job_runs r2
                              ON r2.scheduled_job_id = r1.scheduled_job_id AND r2.attempt_number = r1.attempt_number + 1
                            WHERE r1.scheduled_job_id = '{job}' ORDER BY r1.attempt_number""")
        self.assertGreaterEqual(gaps[0]["gap"], 0.3)
        self.assertGreaterEqual(gaps[1]["gap"], 0.7)

    def test_permanent_failure_skips_retries(self):
        job = self.sluice("queue", "echo", "--params", '{"fail": true, "permanent": true}').stdout.strip()
        with self.serve():
            self.wait_jobs_done(1)
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 1)

    def ended_line(self, log, run, msg="run failed"):
        """The daemon's line for run `run` that says msg, and its then= (what
        became of the job)."""
        line = next((x for x in log.splitlines() if f"run={run}" in x and f'msg="{msg}"' in x), None)
        self.assertIsNotNone(line, f"no {msg!r} line for run {run}:\n{log}")
        then = re.search(r' then="([^"]*)"', line)
        self.assertIsNotNone(then, f"the line says nothing of the job: {line}")
        return line, then.group(1)

    def test_the_log_says_what_became_of_the_job_of_each_run_that_did_not_complete(self):
        # a run's failure was logged before its outcome was recorded, and so
        # without the decision made by recording it: retried (when), failed for
        # good (why), or a recurring job moved to its next slot
        retried = self.sluice("queue", "echo", "--params", '{"fail": true}').stdout.strip()  # max_retries 1
        permanent = self.sluice("queue", "echo", "--params", '{"fail": true, "permanent": true}').stdout.strip()
        recurring = self.sluice("schedule", "echo", "--cron", "0 0 1 1 *", "--max-retries", "0",
                                "--params", '{"fail": true}').stdout.strip()
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{recurring}'")
        cancelled = self.sluice("queue", "sleep", "--params", '{"seconds": 60}').stdout.strip()
        with self.serve() as d:
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                              f"WHERE scheduled_job_id = '{cancelled}'") == "running", 30)
            self.sluice("jobs", "cancel", cancelled)
            self.wait_for(lambda: self.scalar(f"SELECT string_agg(status, ',' ORDER BY status) FROM sluice.scheduled_jobs "
                                              f"WHERE id IN ('{retried}', '{permanent}', '{cancelled}')")
                          .split(",") == ["cancelled", "failed", "failed"] or None, 30, "the jobs did not end")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"scheduled_job_id = '{recurring}' AND status = 'failed'") == 1, 30)
            # logged once recorded: wait for the last of the lines
            runs = {r["attempt_number"]: r for r in self.sql(
                f"SELECT id, attempt_number, started_at FROM sluice.scheduled_job_runs "
                f"WHERE scheduled_job_id = '{retried}'")}
            last = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{recurring}'")
            for run in (runs[2]["id"], last):
                d.wait_log(f'msg="run failed" run={run}')
            d.wait_log('then="job cancelled"')
        log = d.log()
        # retried: which attempt comes, of how many, and when (the second run
        # started no earlier than the time said, to the second)
        line, then = self.ended_line(log, runs[1]["id"])
        self.assertIn('error="', line)
        m = re.fullmatch(r"retry attempt 2 of 2 at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", then)
        self.assertIsNotNone(m, then)
        self.assertEqual(self.scalar(f"SELECT '{m.group(1)}'::timestamptz <= started_at FROM sluice.scheduled_job_runs "
                                     f"WHERE id = '{runs[2]['id']}'"), "t")
        self.assertEqual(self.ended_line(log, runs[2]["id"])[1], "job failed: no retries left (2 of 2)")
        run = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{permanent}'")
        self.assertEqual(self.ended_line(log, run)[1], "job failed: permanent error")
        # the recurring job: its next slot, the one the job now holds
        run = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{recurring}'")
        slot = self.scalar(f"""SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                               FROM sluice.scheduled_jobs WHERE id = '{recurring}' AND attempts = 0""")
        self.assertRegex(slot, r"-01-01T00:00:00Z$")
        self.assertEqual(self.ended_line(log, run)[1],
                         f"next slot at {slot}: no retries left (1 of 1), attempts reset")
        run = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{cancelled}'")
        self.assertEqual(self.ended_line(log, run, "run cancelled")[1], "job cancelled")
        # one line a run that did not complete, and every such line says what then
        failed = [x for x in log.splitlines() if 'msg="run failed"' in x]
        self.assertEqual(len(failed), 4, log)
        self.assertTrue(all(" then=" in x for x in failed), log)

    def test_an_outcome_whose_reply_was_lost_is_logged_as_recorded(self):
        # the connection breaks after Postgres committed the batch recording a
        # failed run, before its answer reached the daemon: the daemon sends
        # the batch again, which finds the run no longer running. That is not
        # a run taken away (no warning that it lost its lease or its job): it
        # is the outcome asked for, recorded, and the run's line says what
        # became of its job, as it would have with the first answer
        job = self.sluice("queue", "echo", "--params", '{"fail": true}').stdout.strip()  # max_retries 1
        proxy = harness.ReplyCutter(self.db, b"retry attempt 2 of 2 at ")
        self.addCleanup(proxy.close)
        with self.serve(env=self.env({"DATABASE_URL": proxy.url})) as d:
            worker = d.worker_id()
            self.wait_for(lambda: proxy.cut.is_set() or None, 30, "the recording's answer was never cut")
            # the retry runs and fails for good: max_retries 1
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{job}'") == "failed" or None, 30)
            runs = self.sql(f"SELECT id, status, attempt_number, worker_id::text, error_message, started_at "
                            f"FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}' "
                            f"ORDER BY attempt_number")
            d.wait_log(f'msg="run failed" run={runs[-1]["id"]}')
        log = d.log()
        self.assertNotIn("run outcome not recorded", log)
        # each attempt ran once, on this worker, and its own failure is recorded
        # (not a rescue's "worker lost")
        error = runs[0]["error_message"]
        self.assertRegex(error, r"echo\.lua:\d+: echo was asked to fail$")
        self.assertEqual([(r["attempt_number"], r["status"], r["worker_id"], r["error_message"]) for r in runs],
                         [(1, "failed", worker, error), (2, "failed", worker, error)])
        # the first run's line, logged once, with the retry it was given: the
        # time the job held, no later than the second run started
        self.assertEqual(len([x for x in log.splitlines()
                              if f"run={runs[0]['id']}" in x and 'msg="run failed"' in x]), 1, log)
        line, then = self.ended_line(log, runs[0]["id"])
        self.assertIn("type=echo ", line)
        self.assertIn(f'error="{error}"', line)
        m = re.fullmatch(r"retry attempt 2 of 2 at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", then)
        self.assertIsNotNone(m, then)
        self.assertEqual(self.scalar(f"SELECT '{m.group(1)}'::timestamptz <= started_at "
                                     f"FROM sluice.scheduled_job_runs WHERE id = '{runs[1]['id']}'"), "t")
        self.assertEqual(self.ended_line(log, runs[1]["id"])[1], "job failed: no retries left (2 of 2)")
        j = self.one(f"SELECT status, attempts, last_error, current_run_id FROM sluice.scheduled_jobs "
                     f"WHERE id = '{job}'")
        self.assertEqual(j, {"status": "failed", "attempts": 0, "last_error": error,
                             "current_run_id": None})

    def test_runs_claimed_by_a_cycle_whose_reply_was_lost_are_given_back_at_once(self):
        # the connection breaks after Postgres committed a cycle that claimed
        # jobs, before its answer reached the daemon: the runs it claimed are
        # running under this worker, which never heard of them. They went on
        # so until their leases ran out and a rescue failed them ("worker
        # lost"), spending an attempt of jobs that never ran. The daemon now
        # gives them back before it claims again, and runs the jobs at once:
        # the lease is long enough here that only that can run them in time.
        # A run it holds meanwhile (in flight) is not given back
        marker = "claimed-by-a-lost-reply"
        proxy = harness.ReplyCutter(self.db, marker.encode())
        self.addCleanup(proxy.close)
        with self.serve("--lease", "300", env=self.env({"DATABASE_URL": proxy.url})) as d:
            d.worker_id()
            held = self.sluice("queue", "sleep", "--params", '{"seconds": 4}').stdout.strip()
            held_run = self.wait_for(lambda: self.scalar(f"SELECT id FROM sluice.scheduled_job_runs "
                                                         f"WHERE scheduled_job_id = '{held}'"), 30)
            # queued while it waits for nothing else, in one transaction: the
            # cycle their NOTIFY sends claims them together, and its answer
            # holds the marker
            pgfixture.psql(self.db, f"""
                INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
                SELECT 'echo', jsonb_build_object('message', '{marker}', 'records', g), now()
                FROM generate_series(1, 3) g;
                SELECT pg_notify('sluice_jobs', '');""")
            self.wait_for(lambda: proxy.cut.is_set() or None, 30, "the claim's answer was never cut")
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM sluice.scheduled_jobs "
                                              "WHERE status = 'completed'") == "4" or None, 30,
                          "the jobs claimed by the cycle whose reply was lost did not run")
            d.wait_log('msg="gave back runs claimed by a cycle whose reply was lost')
        log = d.log()
        line = next(x for x in log.splitlines() if "gave back runs claimed" in x)
        given = re.search(r"runs=\{([^}]*)\}", line).group(1).split(",")
        self.assertEqual(re.search(r" count=(\d+)", line).group(1), str(len(given)), line)
        # the runs given back are gone, as if never claimed; each job ran once,
        # as its first attempt, and none was failed by a rescue
        self.assertEqual(self.scalar(f"SELECT count(*) FROM sluice.scheduled_job_runs "
                                     f"WHERE id::text IN ({', '.join(repr(g) for g in given)})"), "0")
        self.assertNotIn(held_run, given)
        self.assertEqual(self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{held}'"),
                         held_run)
        runs = self.sql("SELECT r.scheduled_job_id::text AS job, r.job_type, r.status, r.attempt_number, "
                        "r.error_message FROM sluice.scheduled_job_runs r ORDER BY 2, 1")
        self.assertEqual(len({r["job"] for r in runs}), 4, runs)
        self.assertEqual([(r["job_type"], r["status"], r["attempt_number"], r["error_message"]) for r in runs],
                         [("echo", "completed", 1, None)] * 3 + [("sleep", "completed", 1, None)])
        jobs = self.sql("SELECT attempts, run_count FROM sluice.scheduled_jobs")
        self.assertEqual([(j["attempts"], j["run_count"]) for j in jobs], [(0, 1)] * 4, jobs)
        self.assertNotIn("worker lost", log)
        self.assertNotIn("run outcome not recorded", log)

    def test_a_run_whose_end_was_recorded_lazily_is_not_given_back(self):
        # an outcome recorded by a cycle that claimed nothing commits lazily: a
        # crash of the database may lose it, leaving a run that did run
        # running under the worker, which no longer holds it. A sweep after a
        # lost reply must leave it to its lease and the rescue, not give it
        # back as never claimed (that deletes the record of a run that ran).
        # The loss is played here by setting the rows back as they were
        marker = "claimed-after-a-lazy-end"
        proxy = harness.ReplyCutter(self.db, marker.encode())
        self.addCleanup(proxy.close)
        with self.serve("--lease", "300", env=self.env({"DATABASE_URL": proxy.url})) as d:
            d.worker_id()
            ran = self.sluice("queue", "echo").stdout.strip()
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{ran}'") == "completed" or None, 30)
            run = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{ran}'")
            pgfixture.psql(self.db, f"""
                UPDATE sluice.scheduled_job_runs SET status = 'running', completed_at = NULL,
                    lease_expires_at = now() + interval '300 seconds'
                WHERE id = '{run}';
                UPDATE sluice.scheduled_jobs SET status = 'active', current_run_id = '{run}',
                                                 next_run_at = NULL
                WHERE id = '{ran}';""")
            job = self.sluice("queue", "echo", "--params", json.dumps({"message": marker})).stdout.strip()
            self.wait_for(lambda: proxy.cut.is_set() or None, 30, "the claim's answer was never cut")
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{job}'") == "completed" or None, 30,
                          "the job claimed by the cycle whose reply was lost did not run")
            d.wait_log('msg="gave back runs claimed by a cycle whose reply was lost')
        line = next(x for x in d.log().splitlines() if "gave back runs claimed" in x)
        self.assertNotIn(run, line)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs WHERE id = '{run}'"),
                         "running")
        self.assertEqual(self.scalar(f"SELECT attempt_number FROM sluice.scheduled_job_runs "
                                     f"WHERE scheduled_job_id = '{job}' AND status = 'completed'"), "1")

    def claims_of_two_workers(self):
        """Five echo jobs queued; a worker (that exists only in this test)
        claims four of them, another one: (worker, other, its four run ids,
        the other's one)."""
        worker = "00000000-0000-4000-8000-000000000001"
        other = "00000000-0000-4000-8000-000000000002"
        for _ in range(5):
            self.sluice("queue", "echo")
        mine = [c["run_id"] for c in self.sql(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 4, 600)")]
        theirs = [c["run_id"] for c in self.sql(f"SELECT run_id FROM sluice.claim_jobs('{other}', 1, 600)")]
        return worker, other, mine, theirs

    def test_release_unheld_runs_gives_back_only_the_workers_runs_it_does_not_hold(self):
        # what a worker calls after a claim whose answer was lost: every run
        # running under it but those it names goes back to its job as if never
        # claimed; other workers' runs and runs no longer running stay
        worker, other, mine, theirs = self.claims_of_two_workers()
        self.assertEqual((len(mine), len(theirs)), (4, 1))
        held, lost_a, lost_b, rescued = mine
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - interval '1 second' "
                    f"WHERE id = '{rescued}'")
        self.assertEqual(self.scalar("SELECT string_agg(run_id::text, ',') FROM sluice.rescue_lost_runs()"), rescued)
        self.assertEqual(self.sql(f"SELECT * FROM sluice.release_unheld_runs('{worker}', NULL)"), [])
        given = self.sql(f"SELECT * FROM sluice.release_unheld_runs('{worker}', '{{{held}}}') AS r(id) ORDER BY 1")
        self.assertEqual([g["id"] for g in given], sorted([lost_a, lost_b]))
        runs = {r["id"]: (r["status"], r["worker_id"]) for r in self.sql(
            "SELECT id, status, worker_id::text FROM sluice.scheduled_job_runs")}
        self.assertEqual(runs, {held: ("running", worker), rescued: ("failed", worker),
                                theirs[0]: ("running", other)})
        # their jobs are due again, with neither the attempt nor the run counted
        jobs = self.sql("SELECT status, attempts, run_count, current_run_id, next_run_at <= now() AS due "
                        "FROM sluice.scheduled_jobs WHERE current_run_id IS NULL AND last_error IS NULL")
        self.assertEqual([(j["status"], j["attempts"], j["run_count"], j["due"]) for j in jobs],
                         [("active", 0, 0, True)] * 2, jobs)
        self.assertEqual(self.sql(f"SELECT * FROM sluice.release_unheld_runs('{worker}', '{{{held}}}')"), [])

    def test_a_cycle_gives_back_the_runs_named_that_run_under_its_worker(self):
        # finish_and_claim_runs() with runs to give back (a worker's claimed
        # runs of a type it no longer has a handler for): those running under
        # the worker go back to their jobs as if never claimed, each named by
        # a row with what its job is now; the others by a row with their
        # status, or "gone". Neither row has both columns NULL, as a claim has
        worker, other, mine, theirs = self.claims_of_two_workers()
        given, paused, rescued, kept = mine
        self.scalar(f"UPDATE sluice.scheduled_jobs SET status = 'paused' WHERE current_run_id = '{paused}'")
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - interval '1 second' "
                    f"WHERE id = '{rescued}'")
        self.assertEqual(self.scalar("SELECT string_agg(run_id::text, ',') FROM sluice.rescue_lost_runs()"), rescued)
        gone = "00000000-0000-4000-8000-0000000000ff"

        def cycle(give_back):
            return {r["run_id"]: r for r in self.sql(
                f"SELECT * FROM sluice.finish_and_claim_runs('[]', '{worker}', 0, 600, NULL, true, false, "
                f"'{{{','.join(give_back)}}}')")}

        rows = cycle([given, paused, rescued, theirs[0], gone])
        self.assertEqual({k: (r["decision"], r["unrecorded"], r["recorded_already"]) for k, r in rows.items()},
                         {given: ("due again at once, no attempt spent", None, False),
                          paused: ("job paused, no attempt spent", None, False),
                          rescued: (None, "failed", False),
                          theirs[0]: (None, "running", False),
                          gone: (None, "gone", False)})
        runs = {r["id"]: (r["status"], r["worker_id"]) for r in self.sql(
            "SELECT id, status, worker_id::text FROM sluice.scheduled_job_runs")}
        self.assertEqual(runs, {rescued: ("failed", worker), kept: ("running", worker),
                                theirs[0]: ("running", other)})
        jobs = self.sql("SELECT status, attempts, run_count, next_run_at <= now() AS due "
                        "FROM sluice.scheduled_jobs WHERE current_run_id IS NULL AND last_error IS NULL "
                        "ORDER BY status")
        self.assertEqual([(j["status"], j["attempts"], j["run_count"], j["due"]) for j in jobs],
                         [("active", 0, 0, True), ("paused", 0, 0, True)], jobs)
        # given back once: a second call finds it gone
        self.assertEqual(cycle([given])[given]["unrecorded"], "gone")
        # the previous signature gives back nothing
        self.assertEqual(self.sql(f"SELECT * FROM sluice.finish_and_claim_runs('[]', '{worker}', 0, 600, NULL, "
                                  f"true, false)"), [])

    def run_losing_a_reply(self, marker, params, status):
        """`sluice run echo --json` through a proxy that loses the first reply
        holding marker; asserts it lost one and exited with status. Returns
        the process and its JSON output."""
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry
        proxy = harness.ReplyCutter(self.db, marker)
        self.addCleanup(proxy.close)
        proc = self.sluice("run", "echo", "--params", json.dumps(params), "--json",
                           env=self.env({"DATABASE_URL": proxy.url}), check=False)
        self.assertTrue(proxy.cut.is_set(), proc.stderr)
        self.assertEqual(proc.returncode, status, proc.stderr)
        return proc, json.loads(proc.stdout)

    def test_sluice_run_whose_recording_answer_was_lost_says_what_was_recorded(self):
        # `sluice run`: the connection breaks after the database recorded the
        # run's failure, before the answer came. It said the outcome could not
        # be recorded and the run stayed running (recorded: false), though it
        # was recorded; connected again, it finds it recorded as it sent it
        proc, out = self.run_losing_a_reply(b"retry attempt 2 of 2 at ", {"fail": True}, 1)
        self.assertEqual((out["status"], out["recorded"], out["job_status"]), ("failed", True, "active"), out)
        self.assertIn("connected again to record the run's outcome", proc.stderr)
        run = self.one(f"SELECT status, error_message, logs FROM sluice.scheduled_job_runs "
                       f"WHERE id = '{out['run_id']}'")
        self.assertEqual((run["status"], run["error_message"]), ("failed", out["error"]))
        self.assertEqual(run["logs"].count("echo: hello"), 1, run["logs"])  # recorded once
        job = self.one(f"""SELECT status, attempts, to_char(next_run_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS next FROM sluice.scheduled_jobs
                           WHERE id = '{out['job_id']}'""")
        self.assertEqual((job["status"], job["attempts"]), ("active", 1))
        self.assertEqual(out["then"], f"retry attempt 2 of 2 at {job['next']}")

    def test_sluice_run_whose_start_answer_was_lost_takes_its_run_up_again(self):
        # the connection breaks after the database made the job and started its
        # run, before the answer came. It stopped with the connection's error,
        # and its run waited out the lease to be failed as "worker lost" and
        # run again by a worker; connected again, it starts that run afresh and
        # runs it, with no attempt spent and no second job
        proc, out = self.run_losing_a_reply(b"start-answer-lost", {"message": "start-answer-lost"}, 0)
        self.assertIn("connected again to start the run", proc.stderr)
        self.assertEqual((out["status"], out["recorded"]), ("completed", True), out)
        jobs = self.sql("SELECT id, status, run_count FROM sluice.scheduled_jobs WHERE job_type = 'echo'")
        self.assertEqual(jobs, [{"id": out["job_id"], "status": "completed", "run_count": 1}])
        runs = self.sql("SELECT id, status, attempt_number FROM sluice.scheduled_job_runs "
                        "WHERE job_type = 'echo'")
        self.assertEqual(runs, [{"id": out["run_id"], "status": "completed", "attempt_number": 1}])

    def test_retake_direct_run_starts_a_foreground_run_afresh_or_says_why_not(self):
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry
        worker = self.scalar("INSERT INTO sluice.workers (hostname, pid, kind, concurrency, version) "
                             "VALUES ('h', 1, 'run', 1, 't') RETURNING id").splitlines()[0]
        retake = f"SELECT run_id, job_id, attempt_number FROM sluice.retake_direct_run('{worker}', 60)"
        self.assertEqual(self.sql(retake), [])  # it holds none: the start made nothing
        first = self.one(f"SELECT run_id, job_id FROM sluice.start_direct_run('{worker}', NULL, 'echo', "
                         f"'{{}}', 'manual', 60)")
        again = self.one(retake)
        self.assertEqual((again["job_id"], again["attempt_number"]), (first["job_id"], 1))
        self.assertNotEqual(again["run_id"], first["run_id"])
        self.assertEqual(self.sql(f"SELECT id, status, worker_id FROM sluice.scheduled_job_runs "
                                  f"WHERE scheduled_job_id = '{first['job_id']}'"),
                         [{"id": again["run_id"], "status": "running", "worker_id": worker}])
        self.assertEqual(self.one(f"SELECT attempts, run_count, current_run_id FROM sluice.scheduled_jobs "
                                  f"WHERE id = '{first['job_id']}'"),
                         {"attempts": 1, "run_count": 1, "current_run_id": again["run_id"]})
        # its job cancelled meanwhile: refused, and nothing changes
        self.sluice("jobs", "cancel", first["job_id"])
        bad = subprocess.run(["psql", self.db, "-X", "-Atc", retake], env=pgfixture.clean_env(),
                             capture_output=True, text=True, timeout=60)
        self.assertIn(f"job {first['job_id']} was made for this run, but is no longer active", bad.stderr)
        self.assertEqual(self.sql(f"SELECT id, status FROM sluice.scheduled_job_runs "
                                  f"WHERE scheduled_job_id = '{first['job_id']}'"),
                         [{"id": again["run_id"], "status": "running"}])
        # a worker holding two runs is no foreground process: refused
        pgfixture.psql(self.db, f"SELECT sluice.start_direct_run('{worker}', NULL, 'echo', '{{}}', 'manual', 60)")
        bad = subprocess.run(["psql", self.db, "-X", "-Atc", retake], env=pgfixture.clean_env(),
                             capture_output=True, text=True, timeout=60)
        self.assertIn("holds 2 runs: not a foreground run's worker", bad.stderr)
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"worker_id = '{worker}'"), 2)

    def test_a_batch_sent_again_tells_outcomes_recorded_already_from_runs_taken_away(self):
        # finish_and_claim_runs() called twice with one batch, as a worker does
        # when the answer to the first call was lost: the second call names the
        # outcomes the first recorded as recorded already, with what became of
        # their jobs, and only the runs taken away meanwhile as not recorded
        worker = "00000000-0000-4000-8000-000000000001"  # workers that exist only in this test
        other = "00000000-0000-4000-8000-000000000002"
        for _ in range(4):
            self.sluice("queue", "echo")
        claimed = self.sql(f"SELECT run_id, job_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        self.assertEqual(len(claimed), 4)
        (failed, _), (completed, _), (rescued, _), (deleted, deleted_job) = [
            (c["run_id"], c["job_id"]) for c in claimed]
        now = time.time()

        def outcome(run, status, error=None, result=None):
            return {"run_id": run, "status": status, "error": error, "result": result, "retryable": True,
                    "logs": "ended\n", "started_at": now - 2, "finished_at": now - 1}

        def call(batch, *args):
            args = ", ".join(args)
            return {r["run_id"]: r for r in self.sql(
                f"SELECT * FROM sluice.finish_and_claim_runs('{json.dumps(batch)}', {args})")}

        batch = [outcome(failed, "failed", "boom"), outcome(completed, "completed", result={"n": 1}),
                 outcome(rescued, "failed", "boom"), outcome(deleted, "failed", "boom")]
        first = call(batch[:2], f"'{worker}'", "0", "600", "NULL", "true", "false")
        self.assertEqual(list(first), [failed])
        decision = first[failed]["decision"]
        self.assertRegex(decision, r"^retry attempt 2 of 2 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # meanwhile one run is failed by a rescue and another's job is deleted
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - interval '1 second' "
                    f"WHERE id = '{rescued}'")
        self.assertEqual(self.scalar("SELECT string_agg(run_id::text, ',') FROM sluice.rescue_lost_runs()"), rescued)
        self.scalar(f"DELETE FROM sluice.scheduled_jobs WHERE id = '{deleted_job}'")
        recorded = self.sql("SELECT id, status, completed_at, logs, error_message "
                            "FROM sluice.scheduled_job_runs ORDER BY id")
        jobs = self.sql("SELECT * FROM sluice.scheduled_jobs ORDER BY id")

        again = call(batch, f"'{worker}'", "0", "600", "NULL", "true", "true")
        self.assertEqual({r: (x["unrecorded"], x["decision"], x["recorded_already"]) for r, x in again.items()},
                         {failed: (None, decision, True), completed: (None, None, True),
                          rescued: ("failed", None, False), deleted: ("failed", None, False)})
        # and it changed nothing: no log appended twice, no attempt spent
        self.assertEqual(self.sql("SELECT id, status, completed_at, logs, error_message "
                                  "FROM sluice.scheduled_job_runs ORDER BY id"), recorded)
        self.assertEqual(self.sql("SELECT * FROM sluice.scheduled_jobs ORDER BY id"), jobs)
        # not another worker's outcome, nor another outcome of the run
        self.assertEqual(call(batch[:2], f"'{other}'", "0", "600", "NULL", "true", "true"),
                         {failed: {**again[failed], "unrecorded": "failed", "decision": None,
                                   "recorded_already": False},
                          completed: {**again[completed], "unrecorded": "completed", "decision": None,
                                      "recorded_already": False}})
        changed = [outcome(failed, "failed", "another error"), outcome(completed, "completed", result={"n": 2})]
        self.assertEqual({r: x["unrecorded"] for r, x in
                          call(changed, f"'{worker}'", "0", "600", "NULL", "true", "true").items()},
                         {failed: "failed", completed: "completed"})
        # a batch not said to be sent again is answered as before
        self.assertEqual({r: (x["unrecorded"], x["recorded_already"]) for r, x in
                          call(batch[:2], f"'{worker}'", "0", "600", "NULL", "true", "false").items()},
                         {failed: ("failed", False), completed: ("completed", False)})
        # the signatures of earlier versions: a failed run's decision, and no
        # row a worker would take for a claim
        self.assertEqual({r: (x["unrecorded"], x["decision"]) for r, x in
                          call(batch, f"'{worker}'", "0", "600", "NULL", "true").items()},
                         {failed: (None, decision), rescued: ("failed", None), deleted: ("failed", None)})
        self.assertEqual({r: x["unrecorded"] for r, x in
                          call(batch, f"'{worker}'", "0", "600", "NULL").items()},
                         {rescued: "failed", deleted: "failed"})
        # once the job has run again, what became of it then is not known any
        # more: the row says which attempt followed
        job = self.scalar(f"SELECT scheduled_job_id FROM sluice.scheduled_job_runs WHERE id = '{failed}'")
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}'")
        retry = {r["job_id"]: r["run_id"] for r in self.sql(f"SELECT * FROM sluice.claim_jobs('{other}', 10, 600)")}
        self.assertIn(job, retry)
        self.assertEqual(call(batch[:1], f"'{worker}'", "0", "600", "NULL", "true", "true")[failed]["decision"],
                         f"the job has run again since: attempt 2 (run {retry[job]}) is running")

    # -------------------------------------------------------------- leases

    def test_killed_worker_job_is_rescued(self):
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 3}').stdout.strip()
        d1 = self.serve("--lease", "2")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
        d1.proc.kill()  # SIGKILL: no chance to record anything
        d1.proc.wait()
        with self.serve("--lease", "2") as d2:
            self.wait_jobs_done(1, timeout=40)
        runs = self.sql(f"SELECT id, attempt_number, status, error_message FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number")
        self.assertEqual(runs[0]["status"], "failed")
        self.assertRegex(runs[0]["error_message"], r"^worker lost: lease expired at \d{4}-\d\d-\d\dT")
        # the rescue says what became of the job: retried at once (sleep: 3 retries)
        line = next(x for x in d2.log().splitlines() if "failed a run whose worker was lost" in x)
        self.assertIn(f"run={runs[0]['id']} type=sleep ", line)  # as every line about a run
        self.assertRegex(line, r' then="retry attempt 2 of 4 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"')
        self.assertEqual(runs[-1]["status"], "completed")
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"],
                         "completed")

    def test_a_run_that_cannot_be_failed_does_not_stop_other_rescues(self):
        # two runs lose their worker; the database refuses to record one of them
        # as failed (a deployment's trigger): the other is still rescued and rerun
        stuck = self.sluice("queue", "sleep", "--params", '{"seconds": 3}').stdout.strip()
        other = self.sluice("queue", "sleep", "--params", '{"seconds": 4}').stdout.strip()
        d1 = self.serve("--lease", "2")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 2, 30)
        d1.kill()
        self.scalar("""CREATE FUNCTION public.refuse_rescue() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.status = 'failed' AND NEW.parameters ->> 'seconds' = '3' THEN
                    RAISE EXCEPTION 'not this one';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_rescue BEFORE UPDATE ON sluice.scheduled_job_runs
                FOR EACH ROW EXECUTE FUNCTION public.refuse_rescue()""")
        with self.serve("--lease", "2") as d2:
            self.wait_for(lambda: self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{other}'")
                          ["status"] == "completed", 40, "the other lost run was never rescued")
            d2.wait_log("could not fail a run whose worker was lost; will try again", 10)
        self.assertIn("not this one", d2.log())
        runs = self.sql(f"SELECT status FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{other}' "
                        f"ORDER BY attempt_number")
        self.assertEqual([r["status"] for r in runs], ["failed", "completed"])
        # the refused one is left as it was, for the next pass
        self.assertEqual([r["status"] for r in self.sql(
            f"SELECT status FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{stuck}'")], ["running"])

    def test_heartbeat_keeps_a_long_run_alive(self):
        # a 7 s run with a 3 s lease: heartbeats every second keep it; a second
        # worker must not rescue it. (A lease of 1.5 s lost the run to any stall
        # of the loaded test machine over a second.)
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 7}').stdout.strip()
        with self.serve("--lease", "3"), self.serve("--lease", "3"):
            self.wait_jobs_done(1, timeout=40)
        runs = self.sql(f"SELECT status FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
        self.assertEqual([r["status"] for r in runs], ["completed"])

    # -------------------------------------------------------------- many workers

    def test_three_workers_run_every_job_exactly_once(self):
        self.make_count_table()
        self.bulk("count", 3000)
        with self.serve("--concurrency", "20"), self.serve("--concurrency", "20"), \
                self.serve("--concurrency", "20"):
            self.wait_jobs_done(3001, timeout=240)
        self.assertEqual(int(self.scalar("SELECT count(*) FROM public.count_runs")), 3000)
        self.assertEqual(int(self.scalar("SELECT count(DISTINCT job_id) FROM public.count_runs")), 3000)
        self.assertEqual(self.count("sluice.scheduled_job_runs", "job_type = 'count' AND status = 'completed'"), 3000)
        workers = int(self.scalar("SELECT count(DISTINCT worker_id) FROM sluice.scheduled_job_runs "
                                  "WHERE job_type = 'count'"))
        self.assertGreaterEqual(workers, 2)

    def test_killed_worker_among_three_loses_nothing(self):
        self.make_count_table()
        self.bulk("count", 3000, '{"pause": 0.05}')
        ds = [self.serve("--concurrency", "20", "--lease", "2") for _ in range(3)]
        victim = ds[0].worker_id()
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'completed'") >= 500, 120)
        # killed with runs in flight, so that there is something to lose
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                         f"status = 'running' AND worker_id = '{victim}'") > 0, 60,
                      "the worker to be killed never had a run in flight")
        ds[0].proc.kill()
        ds[0].proc.wait()
        self.wait_jobs_done(3001, timeout=240)
        for d in ds[1:]:
            self.assertEqual(d.stop(), 0)
        completed = self.sql("SELECT scheduled_job_id, count(*) AS n FROM sluice.scheduled_job_runs "
                             "WHERE job_type = 'count' AND status = 'completed' GROUP BY 1")
        self.assertEqual(len(completed), 3000)
        self.assertTrue(all(r["n"] == 1 for r in completed))
        self.assertEqual(self.count("sluice.scheduled_jobs", "job_type = 'count' AND status = 'completed'"), 3000)
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'running'"), 0)
        # what the killed worker had in flight was failed by a rescue, and run again
        lost = self.sql(f"SELECT status, error_message FROM sluice.scheduled_job_runs "
                        f"WHERE worker_id = '{victim}' AND status <> 'completed'")
        self.assertTrue(lost, "the killed worker had no run in flight")
        self.assertTrue(all(r["status"] == "failed" and r["error_message"].startswith("worker lost: lease expired")
                            for r in lost), lost[:5])

    def test_finishing_a_run_writes_no_index_entry(self):
        # a run's finished version fits on the page its claim wrote it to (a HOT
        # update): recording thousands of runs adds nothing to the runs' indexes
        self.bulk("count", 2000)
        self.make_count_table()
        with self.serve("--concurrency", "10"):
            self.wait_jobs_done(2001, timeout=120)

        def updates():  # a backend's counters are published when it exits
            row = self.one("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                           "WHERE relid = 'sluice.scheduled_job_runs'::regclass")
            return row if row["n_tup_upd"] >= 2000 else None
        row = self.wait_for(updates, 15, "the daemon's updates never reached the statistics")
        self.assertEqual(row["n_tup_hot_upd"], row["n_tup_upd"])

    def test_prefetched_runs_are_given_back_at_shutdown(self):
        # short runs make the worker claim ahead; at SIGTERM the claimed runs it
        # never started go back to the queue untouched
        self.sluice("queue", "noop")
        pgfixture.psql(self.db, """
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT 'noop', '{}', now() FROM generate_series(1, 20)""")
        pgfixture.psql(self.db, """
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at, priority)
            SELECT 'sleep', '{"seconds": 0.2}', now(), 10 FROM generate_series(1, 30) g""")
        d = self.serve("--concurrency", "1", "--prefetch", "20", "--grace", "5")
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                         "job_type = 'sleep' AND status = 'completed'") >= 1, 30)
        self.assertEqual(d.stop(), 0, d.log())
        started = self.count("sluice.scheduled_job_runs", "job_type = 'sleep'")
        self.assertLess(started, 30, "the test needs runs still claimed-but-waiting at shutdown")
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'running'"), 0)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'active' AND next_run_at IS NULL"), 0)
        # every job is either done or due again, and none lost an attempt to the release
        left = self.sql("SELECT attempts, run_count FROM sluice.scheduled_jobs WHERE status = 'active'")
        self.assertTrue(all(r["attempts"] == 0 and r["run_count"] == 0 for r in left), left)
        self.assertEqual(self.count("sluice.dataset_status", "last_status = 'running'"), 0)
        with self.serve():
            self.wait_jobs_done(51)
        self.assertEqual(self.sql("SELECT status, job_type, count(*) AS n FROM sluice.scheduled_jobs "
                                  "GROUP BY 1, 2 ORDER BY 1, 2"), [
            {"status": "completed", "job_type": "noop", "n": 21},
            {"status": "completed", "job_type": "sleep", "n": 30}])
        self.assertEqual(self.count("sluice.scheduled_job_runs", "job_type = 'sleep'"), 30)
        self.assertEqual(self.count("sluice.scheduled_job_runs", "status = 'completed'"), 51)

    # -------------------------------------------------------------- recurring

    def test_schedule_and_next_slot(self):
        self.sluice("migrate")
        bad = self.sluice("schedule", "echo", "--cron", "61 * * * *", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn('minute field "61"', bad.stderr)
        preview = self.sluice("cron", "next", "61 * * * *", check=False)
        self.assertEqual(preview.returncode, 2)
        self.assertEqual(preview.stderr, bad.stderr)  # one message, whichever command reads it
        badtz = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--tz", "Mars/Olympus", check=False)
        self.assertEqual(badtz.returncode, 2)
        self.assertIn("Mars/Olympus", badtz.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        proc = self.sluice("schedule", "echo", "--cron", "30 9 * * mon-fri", "--tz", "America/New_York",
                           "--params", '{"message": "tick"}')
        job = proc.stdout.strip()
        preview = json.loads(self.sluice("cron", "next", "30 9 * * mon-fri", "--tz", "America/New_York",
                                         "-n", "1", "--json").stdout)
        utc = preview["next"][0]["utc"]
        # the slot in UTC, and on the wall clock of the job's zone
        local = preview["next"][0]["local"]
        self.assertEqual(proc.stderr, f"next run: {utc} ({local[:10]} 09:30:00 "
                                      f"{preview['next'][0]['abbreviation']} in America/New_York)\n")
        self.assertEqual(self.sluice("schedule", "echo", "--cron", "@daily").stderr[:10], "next run: ")
        self.assertNotIn("(", self.sluice("schedule", "echo", "--cron", "@weekly").stderr)  # UTC says it all
        row = self.one(f"SELECT schedule_type, cron_expression, timezone, "
                       f"to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS next "
                       f"FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual((row["schedule_type"], row["timezone"]), ("recurring", "America/New_York"))
        self.assertEqual(row["next"], utc)

    def test_cron_next_takes_an_expression_that_starts_with_a_dash(self):
        # it was taken for an unknown option; the parser says what is wrong with it
        why = "sluice: error: bad cron expression '-1 * * * *': minute field \"-1\": missing value\n"
        for args in (["-1 * * * *"], ["--", "-1 * * * *"], ["--tz", "UTC", "-1 * * * *"]):
            proc = self.sluice("cron", "next", *args, check=False)
            self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (2, "", why), args)
        # after --, the argument is the expression whatever it is; options may follow
        proc = self.sluice("cron", "next", "--", "-1", check=False)
        self.assertEqual((proc.returncode, proc.stderr),
                         (2, "sluice: error: bad cron expression '-1': expected 5 fields, got 1\n"))
        lines = self.sluice("cron", "next", "--", "0 9 * * *", "--tz", "Europe/Berlin", "-n", "2",
                            "--from", "2026-06-01").stdout.splitlines()
        self.assertEqual(lines, ["2026-06-01T07:00:00Z  2026-06-01 09:00:00 CEST (+02:00)",
                                 "2026-06-02T07:00:00Z  2026-06-02 09:00:00 CEST (+02:00)"])
        # an option it does not know is still one, and the message says where such an expression goes
        for args, why in ((["-1"], "unknown option '-1' (see `sluice cron next --help`; an expression "
                                   "that starts with '-' goes after --)"),
                          (["--bogus", "0 9 * * *"], "unknown option '--bogus'"),
                          (["0 9 * * *", "--"], "-- needs the cron expression after it"),
                          (["0 9 * * *", "--", "1 * * * *"],
                           "one cron expression expected, got '0 9 * * *' and '1 * * * *'")):
            proc = self.sluice("cron", "next", *args, check=False)
            self.assertEqual((proc.returncode, proc.stdout), (2, ""), args)
            self.assertIn(f"sluice: error: {why}", proc.stderr)
        self.assertIn("-- EXPR", self.sluice("cron", "next", "--help").stdout)

    def test_cron_next_lists_no_time_past_year_9999(self):
        # a slot in year 10000 was printed with a five-digit year
        proc = self.sluice("cron", "next", "0 0 * * *", "--from", "9999-12-29")
        self.assertEqual(proc.stdout.splitlines(), ["9999-12-30T00:00:00Z  9999-12-30 00:00:00 UTC (+00:00)",
                                                    "9999-12-31T00:00:00Z  9999-12-31 00:00:00 UTC (+00:00)"])
        self.assertEqual(proc.stderr, "listing ends with year 9999: 2 of 5 times shown\n")
        out = json.loads(self.sluice("cron", "next", "0 0 * * *", "--from", "9999-12-30", "--json").stdout)
        self.assertEqual([x["utc"] for x in out["next"]], ["9999-12-31T00:00:00Z"])
        # on the zone's clock too: at +14:00 its year ends fourteen hours before
        # UTC's, and the next slot, 9999-12-31T22:00:00Z, is in its year 10000
        proc = self.sluice("cron", "next", "0 12 * * *", "--tz", "Pacific/Kiritimati", "--from", "9999-12-31")
        self.assertEqual(proc.stdout.splitlines(), ["9999-12-30T22:00:00Z  9999-12-31 12:00:00 +14 (+14:00)"])
        self.assertEqual(proc.stderr, "listing ends with year 9999: 1 of 5 times shown\n")
        # none left before its end: said, exit status 1
        proc = self.sluice("cron", "next", "0 0 * * *", "--from", "9999-12-31", check=False)
        self.assertEqual((proc.returncode, proc.stdout), (1, ""))
        self.assertEqual(proc.stderr, 'sluice: error: "0 0 * * *" does not fire after 9999-12-31 before the '
                                      'end of year 9999, where listing ends\n')
        # a --from past it (in UTC) is refused
        proc = self.sluice("cron", "next", "0 0 * * *", "--from", "9999-12-31T23:00:00-14:00", check=False)
        self.assertEqual((proc.returncode, proc.stdout, proc.stderr),
                         (2, "", "sluice: error: --from: '9999-12-31T23:00:00-14:00' is after the end of "
                                 "year 9999 in UTC, where listing ends\n"))
        # the year's last slot itself is listed
        self.assertEqual(self.sluice("cron", "next", "59 23 31 12 *", "--from", "9999-12-31 23:58",
                                     "-n", "1").stdout,
                         "9999-12-31T23:59:00Z  9999-12-31 23:59:00 UTC (+00:00)\n")

    def test_schedule_priority_and_name_as_queue_takes_them(self):
        self.sluice("migrate")
        for value in ("x", "99999999999", "-2147483648", "1000001", " 5", "1.5", ""):
            for cmd in (("schedule", "echo", "--cron", "0 9 * * *"), ("queue", "echo")):
                proc = self.sluice(*cmd, "--priority", value, check=False)
                self.assertEqual(proc.returncode, 2, f"{cmd[0]} --priority {value!r}: {proc.stderr}")
                lines = proc.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, proc.stderr)
                if value:
                    self.assertEqual(lines[0], "sluice: error: --priority must be a whole number from "
                                               f"-1000000 to 1000000, not '{value}'")
                self.assertNotIn("invalid input syntax", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        job = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--priority", "-1000000",
                          "--name", "morning", "--max-retries", "0").stdout.strip()
        self.assertEqual(self.one(f"SELECT priority, name, max_retries FROM sluice.scheduled_jobs "
                                  f"WHERE id = '{job}'"),
                         {"priority": -1000000, "name": "morning", "max_retries": 0})
        usage = self.sluice("schedule", "--help").stdout
        for text in ("--name", "--priority", "-1000000 to", "--brand", "--params", "--tz"):
            self.assertIn(text, usage)

    def test_whole_number_options_refuse_bad_values_alike(self):
        self.sluice("migrate")
        # (command, option, lowest, highest, prefix of the message)
        options = [
            (("queue", "echo"), "--max-retries", 0, 1000, ""),
            (("schedule", "echo", "--cron", "0 9 * * *"), "--max-retries", 0, 1000, ""),
            (("cron", "next", "0 9 * * *"), "-n", 1, 1000, ""),
            (("cron", "next", "0 9 * * *"), "--count", 1, 1000, ""),
            (("runs",), "--limit", 1, 100000, "runs: "),
            (("jobs",), "--limit", 1, 100000, "jobs: "),
            (("serve",), "--prefetch", 0, 500, ""),
        ]
        for cmd, opt, lo, hi, prefix in options:
            # out of range on either side, not a number, trailing junk, a sign
            # below the range, space, a fraction, far beyond a long
            for value in (str(lo - 1), str(hi + 1), "x", "5x", "-5", " 5", "1.5",
                          "99999999999999999999"):
                proc = self.sluice(*cmd, opt, value, check=False)
                what = f"{' '.join(cmd)} {opt} {value!r}"
                self.assertEqual(proc.returncode, 2, f"{what}: {proc.stderr}")
                self.assertEqual(proc.stderr.strip().splitlines(),
                                 [f"sluice: error: {prefix}{opt} must be a whole number "
                                  f"from {lo} to {hi}, not '{value}'"], what)
                self.assertEqual(proc.stdout, "", what)
        # an empty value: the cron preview's own option reader passes it on;
        # the others refuse any empty option value
        for cmd, opt, expected in [
                (("cron", "next", "0 9 * * *"), "-n", "-n must be a whole number from 1 to 1000, not ''"),
                (("runs",), "--limit", "runs: --limit needs a value, not an empty one"),
                (("serve",), "--prefetch", "serve: --prefetch needs a value, not an empty one"),
                (("queue", "echo"), "--max-retries", "queue: --max-retries needs a value, not an empty one")]:
            proc = self.sluice(*cmd, opt, "", check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertEqual(proc.stderr.strip().splitlines(), [f"sluice: error: {expected}"])
        proc = self.sluice("serve", "--prefetch", check=False)
        self.assertEqual((proc.returncode, proc.stderr.strip()),
                         (2, "sluice: error: serve: --prefetch needs a value"))
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)
        # the bounds themselves are taken
        self.assertEqual(len(json.loads(self.sluice("cron", "next", "0 9 * * *", "--count", "1000",
                                                    "--json").stdout)["next"]), 1000)
        self.sluice("runs", "--limit", "100000")

    def test_jobs_edit_changes_a_recurring_job_in_place(self):
        job = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--params", '{"message": "a"}',
                          "--name", "first").stdout.strip()
        columns = "cron_expression, timezone, next_run_at, parameters, priority, name, max_retries, status"

        def row(j=job):
            return self.one(f"SELECT {columns} FROM sluice.scheduled_jobs WHERE id = '{j}'")

        before = row()
        once = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        ended = self.sluice("schedule", "echo", "--cron", "@daily").stdout.strip()
        self.sluice("jobs", "cancel", ended)
        # bad input: one line on stderr, exit 2, nothing changed
        for args, message in [
                (("--cron", "61 * * * *"), "bad cron expression '61 * * * *': minute field \"61\""),
                (("--tz", "Mars/Olympus"), "bad time zone 'Mars/Olympus'"),
                (("--params", '{"mesage": "b"}'), "unknown parameter 'mesage' — did you mean 'message'?"),
                (("--priority", "1000001"), "--priority must be a whole number from -1000000 to 1000000"),
                (("--name", ""), "jobs edit: --name needs a value, not an empty one"),
                ((), "jobs edit: nothing to change: give --cron, --tz, --params, --priority, --name or "
                     "--max-retries"),
                (("--max-retries", "1001"), "--max-retries must be a whole number from 0 to 1000"),
                (("--at", "+1h"), "jobs edit: unknown option '--at'"),
                ((job[:8], "--name", "x"), f"jobs edit: unexpected argument '{job[:8]}'")]:
            proc = self.sluice("jobs", "edit", job[:8], *args, check=False)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stderr}")
            self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)
            self.assertIn(message, proc.stderr)
            self.assertEqual(proc.stdout, "")
            self.assertEqual(row(), before, args)
        for other, message in [(once, f"job {once} is a one-time job: only recurring jobs can be edited "
                                      f"(cancel it and queue it again)"),
                               (ended, f"job {ended} is cancelled: only active, paused or failed jobs can be "
                                       f"edited (schedule it again)")]:
            was = row(other)
            proc = self.sluice("jobs", "edit", other, "--cron", "@hourly", check=False)
            self.assertEqual((proc.returncode, proc.stderr), (2, f"sluice: error: {message}\n"))
            self.assertEqual(row(other), was)
        # a new schedule: its next slot is the one `cron next` shows
        proc = self.sluice("jobs", "edit", job[:8], "--cron", "30 8 * * mon-fri", "--tz", "America/New_York")
        first = json.loads(self.sluice("cron", "next", "30 8 * * mon-fri", "--tz", "America/New_York",
                                       "-n", "1", "--json").stdout)["next"][0]
        slot, local = first["utc"], f"{first['local'][:10]} {first['local'][11:19]} {first['abbreviation']}"
        self.assertEqual((proc.stdout, proc.stderr),
                         (f"{job}  active\n", f"next run: {slot} ({local} in America/New_York)\n"))
        self.assertRegex(self.sluice("show", job).stdout, rf"next run\s+.*\(in .*\), {local}\n")
        after = row()
        self.assertEqual((after["cron_expression"], after["timezone"]), ("30 8 * * mon-fri", "America/New_York"))
        self.assertEqual(self.scalar(f"SELECT next_run_at = '{slot}' FROM sluice.scheduled_jobs "
                                     f"WHERE id = '{job}'"), "t")
        self.assertEqual((after["parameters"], after["priority"], after["name"]),
                         (before["parameters"], before["priority"], before["name"]))
        # parameters are replaced (the defaults fill the rest); priority, name
        self.sluice("jobs", "edit", job, "--params", '{"fail": false}', "--priority", "-5", "--name", "second",
                    "--max-retries", "7")
        after = row()
        self.assertEqual(after["parameters"], {"fail": False, "message": "hello", "permanent": False})
        self.assertEqual((after["priority"], after["name"], after["max_retries"], after["cron_expression"]),
                         (-5, "second", 7, "30 8 * * mon-fri"))
        # a paused job stays paused, with its new slot kept for resume
        self.sluice("jobs", "pause", job)
        proc = self.sluice("jobs", "edit", job, "--tz", "UTC")
        self.assertEqual(proc.stdout, f"{job}  paused\n")
        self.assertEqual(self.one(f"SELECT status, to_char(next_run_at AT TIME ZONE 'UTC', 'HH24:MI') AS at "
                                  f"FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"status": "paused", "at": "08:30"})
        self.sluice("jobs", "resume", job)
        # a run in flight: its end would set the next slot by the old schedule
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}'")
        run = self.scalar("SELECT run_id FROM sluice.claim_jobs('00000000-0000-4000-8000-000000000001', 10, 600)")
        was = row()
        proc = self.sluice("jobs", "edit", job, "--cron", "@hourly", check=False)
        self.assertEqual((proc.returncode, proc.stderr),
                         (2, f"sluice: error: job {job} has a run in flight ({run}): its schedule can change "
                             f"once the run has ended\n"))
        self.assertEqual(row(), was)
        self.sluice("jobs", "edit", job, "--params", '{"message": "next time"}')  # the next run's
        self.assertEqual(row()["parameters"]["message"], "next time")
        # in SQL, without a first slot: the next worker computes it
        self.scalar(f"SELECT sluice.finish_run('{run}', 'completed', NULL, NULL, '', false, now() + "
                    f"interval '1 hour', NULL)")
        self.assertEqual(self.scalar(f"SELECT sluice.edit_schedule('{job}', '*/5 * * * *')"), "active")
        self.assertEqual(self.scalar(f"SELECT count(*) FROM sluice.unscheduled_jobs() WHERE id = '{job}'"), "1")
        self.assertIn("ERROR:  22023: invalid parameters for echo",
                      self.sql_error(f"SELECT sluice.edit_schedule('{job}', p_parameters => '{{\"fail\": 1}}')"))
        self.assertIn("ERROR:  P0002: no job with id",
                      self.sql_error("SELECT sluice.edit_schedule('00000000-0000-4000-8000-000000000009', '@daily')"))
        # a recurring job failed because its schedule could not be evaluated:
        # a new one makes it active again; nothing else will do
        broken = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '0 0 30 2 *')")
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET status = 'failed', "
                                f"last_error = 'cron expression ''0 0 30 2 *'' never fires' WHERE id = '{broken}'")
        was = row(broken)
        for args, message in [
                (("--name", "x"), f"job {broken} is failed, as its schedule could not be evaluated: cron "
                                  f"expression '0 0 30 2 *' never fires (give it a new cron expression or "
                                  f"time zone)"),
                (("--tz", "Europe/Paris"), "sluice: error: cron expression '0 0 30 2 *' never fires\n")]:
            proc = self.sluice("jobs", "edit", broken, *args, check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(message, proc.stderr)
            self.assertEqual(row(broken), was)
        proc = self.sluice("jobs", "edit", broken, "--cron", "0 0 28 2 *")
        self.assertEqual(proc.stdout, f"{broken}  active\n")
        self.assertEqual(self.one(f"SELECT status, last_error, next_run_at IS NOT NULL AS due "
                                  f"FROM sluice.scheduled_jobs WHERE id = '{broken}'"),
                         {"status": "active", "last_error": None, "due": True})
        # the help, as for the other job commands
        self.assertEqual(self.sluice("help", "jobs", "edit").stdout, self.sluice("jobs", "edit", "--help").stdout)
        self.assertIn("sluice jobs edit JOB_ID", self.sluice("jobs", "--help").stdout)

    def test_jobs_and_runs_list_recurring_or_one_time_jobs_alone(self):
        recurring = self.sluice("schedule", "echo", "--cron", "@daily").stdout.strip()
        once = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        self.sluice("run", "echo")  # a run of a one-time job
        ran = self.scalar("SELECT scheduled_job_id FROM sluice.scheduled_job_runs")
        pgfixture.psql(self.db, f"INSERT INTO sluice.scheduled_job_runs (scheduled_job_id, job_type, "
                                f"attempt_number, status, trigger_source, started_at, completed_at) "
                                f"VALUES ('{recurring}', 'echo', 1, 'completed', 'scheduled', now(), now())")

        def ids(*args):
            return {r["job_id"] for r in json.loads(self.sluice(*args, "--json").stdout)}

        self.assertEqual(ids("jobs", "--recurring"), {recurring})
        self.assertEqual(ids("jobs", "--one-time"), {once, ran})
        self.assertEqual(ids("jobs"), {recurring, once, ran})
        self.assertEqual(ids("runs", "--recurring"), {recurring})
        self.assertEqual(ids("runs", "--one-time"), {ran})
        table = self.sluice("jobs", "--recurring").stdout
        self.assertIn(recurring[:8], table)
        self.assertNotIn(once[:8], table)
        proc = self.sluice("jobs", "--recurring", "--status", "failed")
        self.assertEqual((proc.stdout, proc.stderr), ("", "no jobs match the filters\n"))
        for cmd in ("jobs", "runs"):
            proc = self.sluice(cmd, "--recurring", "--one-time", check=False)
            self.assertEqual((proc.returncode, proc.stderr),
                             (2, f"sluice: error: {cmd}: give --recurring or --one-time, not both\n"))
            self.assertIn("--recurring", self.sluice(cmd, "--help").stdout)

    def test_recurring_job_runs_and_moves_to_its_next_slot(self):
        job = self.sluice("schedule", "echo", "--cron", "0 0 1 1 *").stdout.strip()
        # as if every worker had been down for five years: the missed slots run once
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET next_run_at = now() - interval '5 years' "
                                f"WHERE id = '{job}'")
        with self.serve():
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'completed'") == 1, 30)
            self.wait_for(lambda: self.scalar(f"SELECT next_run_at IS NOT NULL FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{job}'") == "t", 10)
            time.sleep(1.0)
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 1)
        row = self.one(f"SELECT status, attempts, extract(month FROM next_run_at AT TIME ZONE 'UTC') AS m, "
                       f"extract(day FROM next_run_at AT TIME ZONE 'UTC') AS d, next_run_at > now() AS future "
                       f"FROM sluice.scheduled_jobs WHERE id = '{job}'")
        self.assertEqual((row["status"], row["attempts"], row["m"], row["d"], row["future"]),
                         ("active", 0, 1, 1, True))

    def test_a_recurring_job_runs_once_at_its_slot(self):
        # a run that ends milliseconds after its slot began must not be given the
        # same slot again (the clock that said "now" was a coarse one, a few ms
        # behind); this waits for the next minute to begin
        # the four are scheduled within one minute, so that they share their slot:
        # late in a minute, the later ones would be given the next one (four
        # keys: four schedules alike in all else)
        self.wait_for(lambda: time.time() % 60 < 45, 20, "the minute never turned")
        jobs = [self.sluice("schedule", "noop", "--cron", "* * * * *", "--dedupe-key", f"k{i}").stdout.strip()
                for i in range(4)]
        slots = self.sql("SELECT DISTINCT extract(epoch FROM next_run_at) AS due FROM sluice.scheduled_jobs")
        self.assertEqual(len(slots), 1, f"scheduling the four took more than 15 s: {slots}")
        slot = float(slots[0]["due"])
        with self.serve("--concurrency", "4"):
            self.wait_for(lambda: time.time() > slot + 3, 75, "the slot never came")
        counts = self.sql(f"SELECT scheduled_job_id::text AS job, count(*) AS n FROM sluice.scheduled_job_runs "
                          f"WHERE started_at >= to_timestamp({slot}) GROUP BY 1")
        self.assertEqual(sorted(r["job"] for r in counts), sorted(jobs))
        self.assertEqual([r["n"] for r in counts], [1] * len(jobs), counts)
        ahead = self.sql("SELECT id, extract(epoch FROM next_run_at) AS due FROM sluice.scheduled_jobs")
        self.assertEqual([float(r["due"]) for r in ahead], [slot + 60] * len(jobs), ahead)

    def test_recurring_job_created_in_sql_gets_a_slot(self):
        self.sluice("queue", "noop")
        job = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '*/5 * * * *')")
        bad = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', 'not a cron')")
        with self.serve():
            self.wait_for(lambda: self.scalar(f"SELECT next_run_at IS NOT NULL FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{job}'") == "t", 20)
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{bad}'")
                          == "failed", 20)
        minute = int(float(self.scalar(f"SELECT extract(minute FROM next_run_at) FROM sluice.scheduled_jobs "
                                       f"WHERE id = '{job}'")))
        self.assertEqual(minute % 5, 0)
        self.assertIn("bad cron expression", self.scalar(f"SELECT last_error FROM sluice.scheduled_jobs "
                                                         f"WHERE id = '{bad}'"))

    def test_recurring_job_created_in_sql_with_a_schedule_that_cannot_run_is_failed_and_named(self):
        # schedule_job() takes any text: the first worker evaluates it, fails the
        # job with the reason, and says which job in its log, once
        self.sluice("queue", "noop")
        bad = {
            "cron": self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '61 * * * *')"),
            "zone": self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '@daily', 'Mars/Olympus')"),
            "never": self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '0 0 30 2 *')"),
        }
        # one given its first slot runs it, and is failed when its next cannot be found
        ran = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', 'every day', 'UTC', '{}', now())")
        good = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '@hourly')")
        with self.serve() as d:
            for job in [*bad.values(), ran]:
                self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                                  f"WHERE id = '{job}'") == "failed", 20)
            for job in [*bad.values(), ran]:
                d.wait_log(f"job={job}")
            self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{good}'"),
                             "active")
            # later passes happen before the daemon stops: a recurring job
            # created now is given its slot only by a pass that began after the
            # ones above were failed, and one created after that by a later one
            for _ in range(2):
                later = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '@hourly')")
                self.wait_for(lambda: self.scalar(f"SELECT next_run_at IS NOT NULL FROM sluice.scheduled_jobs "
                                                  f"WHERE id = '{later}'") == "t", 30,
                              "no later pass over the unscheduled jobs")
        errors = {k: self.scalar(f"SELECT last_error FROM sluice.scheduled_jobs WHERE id = '{v}'")
                  for k, v in bad.items()}
        self.assertEqual(errors["cron"], "bad cron expression '61 * * * *': "
                                         "minute field \"61\": value 61 out of range 0-59")
        self.assertRegex(errors["zone"], r"^bad time zone 'Mars/Olympus': unknown time zone")
        self.assertEqual(errors["never"], "cron expression '0 0 30 2 *' never fires")
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{ran}'"), 1)
        self.assertRegex(self.scalar(f"SELECT last_error FROM sluice.jobs_overview WHERE job_id = '{ran}'"),
                         r"^bad cron expression 'every day': expected 5 fields, got 2$")
        listed = json.loads(self.sluice("jobs", "--status", "failed", "--json").stdout)
        self.assertEqual({r["job_id"]: r["last_error"] for r in listed if r["job_id"] in bad.values()},
                         {v: errors[k] for k, v in bad.items()})
        # said once per job, not at every pass
        for job in bad.values():
            self.assertEqual(d.log().count(f"job={job}"), 1, d.log())

    # -------------------------------------------------------------- dedupe

    def test_a_schedule_is_made_once(self):
        # the same command run twice made two jobs, each running at every slot
        first = self.sluice("schedule", "echo", "--cron", "0 * * * *")
        job = first.stdout.strip()
        same = "with the same expression, zone and parameters; nothing new was created"
        for args in ([], ["--cron", "@HOURLY"], ["--cron", " 0  *\t* * * "],
                     ["--params", '{"message": "hello"}'],  # the default, filled in
                     ["--tz", "UTC"]):
            argv = ["--cron", "0 * * * *", *args] if "--cron" not in args else args
            proc = self.sluice("schedule", "echo", *argv)
            self.assertEqual(proc.stdout, f"{job}\n", args)
            self.assertEqual(proc.stderr, f"echo: already scheduled as {job}, {same}\n{first.stderr}", args)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)
        # its own name, priority and retries are kept, and that is said
        proc = self.sluice("schedule", "echo", "--cron", "@hourly", "--name", "n", "--priority", "5")
        self.assertEqual(proc.stdout, f"{job}\n")
        self.assertIn(f"{same}; it keeps its own name and priority (`sluice jobs edit` changes them)\n",
                      proc.stderr)
        self.assertEqual(self.one(f"SELECT name, priority FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"name": None, "priority": 0})
        # anything else that differs is another schedule
        self.sluice("brands", "add", "acme")
        others = [self.sluice("schedule", "echo", "--cron", "0 * * * *", *args).stdout.strip()
                  for args in (["--params", '{"message": "other"}'], ["--tz", "Europe/Berlin"],
                               ["--brand", "acme"])]
        others.append(self.sluice("schedule", "echo", "--cron", "0 */1 * * *").stdout.strip())
        others.append(self.sluice("schedule", "noop", "--cron", "0 * * * *").stdout.strip())
        self.assertEqual(len({job, *others}), 6)
        # a paused one is the same schedule (and said to be paused); a cancelled one is not
        self.sluice("jobs", "pause", job)
        proc = self.sluice("schedule", "echo", "--cron", "@hourly")
        self.assertEqual(proc.stdout, f"{job}\n")
        self.assertIn(f"{same}; it is paused (`sluice jobs resume` lets it run)\n", proc.stderr)
        self.sluice("jobs", "cancel", job)
        again = self.sluice("schedule", "echo", "--cron", "@hourly")
        self.assertNotEqual(again.stdout.strip(), job)
        self.assertNotIn("already", again.stderr)
        # through SQL: ensure_schedule() says whether it made one; schedule_job()
        # makes one each time, as it always did
        self.assertEqual(self.one("SELECT job_id::text, created FROM sluice.ensure_schedule(NULL, 'echo', "
                                  "'0 * * * *')"), {"job_id": again.stdout.strip(), "created": False})
        before = self.count("sluice.scheduled_jobs")
        self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '0 * * * *')")
        self.assertEqual(self.count("sluice.scheduled_jobs"), before + 1)

    def test_a_zone_is_the_same_schedule_under_any_of_its_names(self):
        # UTC, Etc/UTC, Zulu… are one zone under several names (links of the IANA
        # database), as are US/Eastern and America/New_York: compared by name, they
        # made two jobs, each running at every slot
        first = self.sluice("schedule", "echo", "--cron", "0 * * * *", "--tz", "UTC")
        job = first.stdout.strip()
        same = ("with the same expression, zone and parameters; nothing new was created; "
                "it keeps its own zone name (`sluice jobs edit` changes it)")
        for tz in ("Etc/UTC", "Zulu", "Universal", "Etc/Universal", "Etc/Zulu", "UCT"):
            proc = self.sluice("schedule", "echo", "--cron", "0 * * * *", "--tz", tz)
            self.assertEqual(proc.stdout, f"{job}\n", tz)
            self.assertEqual(proc.stderr, f"echo: already scheduled as {job}, {same}\n{first.stderr}", tz)
        east = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--tz", "US/Eastern").stdout.strip()
        proc = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--tz", "America/New_York")
        self.assertEqual(proc.stdout, f"{east}\n")
        self.assertIn(f"already scheduled as {east}", proc.stderr)
        # each job keeps the name it was given
        self.assertEqual(self.sql("SELECT timezone FROM sluice.scheduled_jobs ORDER BY created_at"),
                         [{"timezone": "UTC"}, {"timezone": "US/Eastern"}])
        # a zone whose rules are alike but that is a zone of its own is another
        # schedule: Etc/GMT (whose clock says GMT, not UTC)
        gmt = self.sluice("schedule", "echo", "--cron", "0 * * * *", "--tz", "Etc/GMT")
        self.assertNotIn(gmt.stdout.strip(), (job, east))
        self.assertNotIn("already", gmt.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 3)
        gmt = gmt.stdout.strip()
        # an edit may make a job the same schedule as another: it is done, and said
        proc = self.sluice("jobs", "edit", gmt, "--tz", "Zulu")
        self.assertEqual(proc.stdout, f"{gmt}  active\n")
        self.assertIn(f"jobs edit: job {gmt} is now the same schedule as job {job} (type, brand, expression, "
                      f"zone and parameters): both run at every slot; `sluice jobs cancel {job}` if one is "
                      f"enough\n", proc.stderr)
        self.assertEqual(self.scalar(f"SELECT timezone FROM sluice.scheduled_jobs WHERE id = '{gmt}'"), "Zulu")
        # and an edit that leaves them apart says nothing of it
        proc = self.sluice("jobs", "edit", gmt, "--cron", "30 * * * *")
        self.assertNotIn("same schedule", proc.stderr)
        proc = self.sluice("jobs", "edit", east, "--priority", "3")
        self.assertNotIn("same schedule", proc.stderr)
        # through SQL the names of the zone are the caller's to give, the zone among them
        self.assertEqual(self.one("SELECT job_id::text, created FROM sluice.ensure_schedule(NULL, 'echo', "
                                  "'0 9 * * *', 'America/New_York', p_zone_names => "
                                  "'{America/New_York,US/Eastern}')"), {"job_id": east, "created": False})
        self.assertIn("the names of zone UTC do not include it",
                      self.sql_error("SELECT sluice.ensure_schedule(NULL, 'echo', '0 * * * *', 'UTC', "
                                     "p_zone_names => '{Etc/UTC}')"))
        self.assertEqual(self.count("sluice.scheduled_jobs"), 3)

    def test_jobs_edit_and_schedule_agree_on_what_the_same_schedule_is(self):
        # `sluice jobs edit` says a job is now the same schedule as another when
        # `sluice schedule` given what the edit gave would have named that other
        # instead of making a job, and only then: an expression written another
        # way, a zone under another name, parameters in another order or with a
        # default spelt out are the same; anything else is another schedule
        params = '{"message": "hi", "records": 3}'
        job = self.sluice("schedule", "echo", "--cron", "0 0 * * *", "--tz", "America/New_York",
                          "--params", params).stdout.strip()
        cases = [("@daily", "US/Eastern", '{"records": 3, "message": "hi"}', True),
                 (" @MIDNIGHT ", "America/New_York", '{"records": 3, "fail": false, "message": "hi"}', True),
                 ("0\t0  * * *", "US/Eastern", '{"permanent": false, "message": "hi", "records": 3}', True),
                 ("@weekly", "US/Eastern", params, False),
                 ("0 0 */1 * *", "America/New_York", params, False),
                 ("@daily", "America/Detroit", params, False),  # alike today, a zone of its own
                 ("@daily", "America/New_York", '{"message": "hi"}', False)]
        for i, (cron, tz, given, same) in enumerate(cases):
            given_args = ["--cron", cron, "--tz", tz, "--params", given]
            named = self.sluice("schedule", "echo", *given_args).stdout.strip()
            self.assertEqual(named == job, same, given_args)
            # another job, apart from both, edited to what was given: the notice
            # names the job `schedule` printed (the first job, or the one it made)
            other = self.sluice("schedule", "echo", "--cron", "0 5 * * *", "--params",
                                f'{{"message": "apart {i}"}}').stdout.strip()
            proc = self.sluice("jobs", "edit", other, *given_args)
            self.assertIn(f"jobs edit: job {other} is now the same schedule as job {named} (", proc.stderr,
                          given_args)
            names = ("{America/Detroit,US/Michigan}" if tz == "America/Detroit"
                     else "{America/New_York,US/Eastern}")
            self.assertEqual(self.scalar(f"SELECT sluice.same_schedule_as('{other}', '{names}')"), named)
            self.sluice("jobs", "cancel", other, *([] if same else [named]))
        # a job holding a dedupe key is the same schedule as one without (a
        # `schedule` without a key names it), two holding keys are not
        keyed = self.sluice("schedule", "echo", "--cron", "0 5 * * *", "--dedupe-key", "k").stdout.strip()
        proc = self.sluice("jobs", "edit", keyed, "--cron", "@midnight", "--tz", "US/Eastern", "--params", params)
        self.assertIn(f"jobs edit: job {keyed} is now the same schedule as job {job} (", proc.stderr)
        self.sluice("jobs", "cancel", job)
        self.assertEqual(self.sluice("schedule", "echo", "--cron", "@daily", "--tz", "America/New_York",
                                     "--params", params).stdout.strip(), keyed)
        both = self.sluice("schedule", "echo", "--cron", "0 5 * * *", "--dedupe-key", "j").stdout.strip()
        proc = self.sluice("jobs", "edit", both, "--cron", "@midnight", "--tz", "US/Eastern", "--params", params)
        self.assertNotIn("same schedule", proc.stderr)
        # in SQL: a job that is not an active or paused recurring job has none;
        # the names given must include the job's zone
        once = self.sluice("queue", "echo").stdout.strip()
        self.assertEqual(self.scalar(f"SELECT sluice.same_schedule_as('{once}') IS NULL"), "t")
        self.assertEqual(self.scalar(f"SELECT sluice.same_schedule_as('{job}') IS NULL"), "t")  # cancelled
        self.assertIn("the names of zone US/Eastern do not include it",
                      self.sql_error(f"SELECT sluice.same_schedule_as('{both}', '{{America/New_York}}')"))

    def test_a_schedule_with_a_dedupe_key_is_made_once_whatever_else_it_says(self):
        a = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--dedupe-key", "morning").stdout.strip()
        # another key: another schedule, alike in all else
        b = self.sluice("schedule", "echo", "--cron", "0 9 * * *", "--dedupe-key", "other").stdout.strip()
        self.assertNotEqual(a, b)
        proc = self.sluice("schedule", "echo", "--cron", "30 9 * * *", "--tz", "Europe/Berlin",
                           "--dedupe-key", "morning")
        self.assertEqual(proc.stdout, f"{a}\n")
        self.assertIn(f"echo: already scheduled as {a}, with dedupe key 'morning'; nothing new was created; "
                      f"it keeps its own expression and zone (`sluice jobs edit` changes them)\n", proc.stderr)
        self.assertEqual(self.one(f"SELECT cron_expression, timezone FROM sluice.scheduled_jobs WHERE id = '{a}'"),
                         {"cron_expression": "0 9 * * *", "timezone": "UTC"})
        proc = self.sluice("schedule", "echo", "--cron", "30 9 * * *", "--dedupe-key", "morning")
        self.assertIn("it keeps its own expression (`sluice jobs edit` changes it)\n", proc.stderr)
        # a one-time job holding the key is not the schedule asked for
        once = self.sluice("queue", "echo", "--dedupe-key", "weekly", "--at", "+1h").stdout.strip()
        proc = self.sluice("schedule", "echo", "--cron", "@weekly", "--dedupe-key", "weekly", check=False)
        self.assertEqual((proc.returncode, proc.stdout), (2, ""))
        self.assertEqual(proc.stderr, f"sluice: error: schedule: dedupe key 'weekly' is held by one-time job "
                                      f"{once} (active); nothing was scheduled\n")
        self.assertEqual(self.count("sluice.scheduled_jobs"), 3)
        proc = self.sluice("schedule", "echo", "--cron", "@weekly", "--dedupe-key", "", check=False)
        self.assertEqual((proc.returncode, proc.stderr),
                         (2, "sluice: error: schedule: --dedupe-key needs a value, not an empty one\n"))
        self.assertIn("--dedupe-key", self.sluice("schedule", "--help").stdout)
        proc = self.sluice("jobs", "edit", a, "--dedupe-key", "x", check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("jobs edit: unknown option '--dedupe-key'", proc.stderr)

    def test_concurrent_schedules_make_one_job(self):
        self.sluice("migrate")
        # the processes all wait at once: a session of the test holds a lock
        # that lets them read the jobs but not add one, until every one of
        # them waits for it (for that lock, or for another process's turn)
        for argv in ([["--cron", "*/5 * * * *", "--params", '{"message": "x"}']] * 6,
                     [["--cron", f"{i} 8 * * *", "--dedupe-key", "k"] for i in range(6)]):
            holder = subprocess.Popen(["psql", self.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                      env=pgfixture.clean_env(), stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            procs = []
            try:
                holder.stdin.write("BEGIN; LOCK TABLE sluice.scheduled_jobs IN SHARE MODE;\n")
                holder.stdin.flush()
                self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                                  "AND state = 'idle in transaction' AND query LIKE 'LOCK TABLE%'") == "1", 30)
                procs = [subprocess.Popen([pgfixture.sluice_bin(), "schedule", "echo", *args], env=self.env(),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for args in argv]
                self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                                  "AND wait_event_type = 'Lock' AND query LIKE '%ensure_schedule%'") == str(len(argv)),
                              60, "the schedules did not all wait")
                holder.stdin.write("COMMIT;\n")
                holder.stdin.close()
                outs = [p.communicate(timeout=60) for p in procs]
            finally:
                for p in (holder, *procs):
                    if p.poll() is None:
                        p.kill()
                    p.wait()
            self.assertEqual([p.returncode for p in procs], [0] * len(argv), outs)
            ids = {out for out, _ in outs}
            self.assertEqual(len(ids), 1, outs)
            self.assertEqual(sum("already scheduled as" in err for _, err in outs), len(argv) - 1, outs)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 2)

    def test_dedupe_is_race_free(self):
        self.sluice("queue", "noop")

        def enqueue(_):
            return self.sluice("queue", "echo", "--dedupe-key", "same", "--at", "+1h")

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
            procs = list(ex.map(enqueue, range(16)))
        ids = {p.stdout.strip() for p in procs}
        self.assertEqual(len(ids), 1, ids)
        self.assertEqual(self.count("sluice.scheduled_jobs", "dedupe_key = 'same'"), 1)
        self.assertTrue(any("already pending or running" in p.stderr for p in procs))
        # through SQL too, in parallel
        def sql_enqueue(_):
            return pgfixture.psql(self.db, "SELECT sluice.queue_one_time_job(NULL, 'echo', '{}', NULL, 0, 'k2')")
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
            sql_ids = set(ex.map(sql_enqueue, range(16)))
        self.assertEqual(len(sql_ids), 1)
        # once the job is done, the key is free again
        pgfixture.psql(self.db, "UPDATE sluice.scheduled_jobs SET status = 'completed', next_run_at = NULL "
                                "WHERE dedupe_key = 'same'")
        again = self.sluice("queue", "echo", "--dedupe-key", "same").stdout.strip()
        self.assertNotIn(again, ids)

    def test_a_paused_job_holds_its_dedupe_key_and_is_called_paused(self):
        job = self.sluice("queue", "echo", "--dedupe-key", "k", "--at", "+1h").stdout.strip()
        self.sluice("jobs", "pause", job)
        again = self.sluice("queue", "echo", "--dedupe-key", "k", "--params", '{"message": "other"}')
        self.assertEqual(again.stdout.strip(), job)
        self.assertEqual(again.stderr, f"echo: a job with dedupe key 'k' is paused: {job}; nothing new was "
                                       f"queued (`sluice jobs resume` lets it run)\n")
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "paused")
        self.assertIn("running or paused", self.sluice("queue", "--help").stdout)

    def test_a_cancelled_job_holds_its_dedupe_key_until_its_run_ends(self):
        # the run of a cancelled job is still in flight until its worker stops it:
        # queueing the same key meanwhile must not start a second run beside it
        # (a second paid scrape); once the run has ended the key is free
        job = self.sluice("queue", "sleep", "--dedupe-key", "scrape",
                          "--params", '{"seconds": 60}').stdout.strip()
        with self.serve() as d:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            d.signal(signal.SIGSTOP)  # a worker that has not heard of the cancel yet
            try:
                self.assertIn("cancelling", self.sluice("jobs", "cancel", job).stdout)
                again = self.sluice("queue", "sleep", "--dedupe-key", "scrape",
                                    "--params", '{"seconds": 0}')
                self.assertEqual(again.stdout.strip(), job)
                self.assertIn(f"sleep: a job with dedupe key 'scrape' is cancelled but its run is still "
                              f"in flight: {job}", again.stderr)

                def sql_enqueue(_):
                    return pgfixture.psql(self.db, "SELECT job_id || ' ' || created FROM sluice.enqueue("
                                                   "NULL, 'sleep', '{\"seconds\": 0}', NULL, 0, 'scrape')")
                with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
                    replies = set(ex.map(sql_enqueue, range(16)))
                self.assertEqual(replies, {f"{job} false"})
                self.assertEqual(self.count("sluice.scheduled_jobs"), 1)
                self.assertEqual(self.count("sluice.scheduled_job_runs"), 1)
            finally:
                d.signal(signal.SIGCONT)
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'cancelled'") == 1, 30)
            new = self.sluice("queue", "sleep", "--dedupe-key", "scrape", "--params", '{"seconds": 0}')
            self.assertNotEqual(new.stdout.strip(), job)
            self.assertEqual(new.stderr, "")
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{new.stdout.strip()}'") == "completed", 30)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "cancelled")

    def test_upgrading_where_a_cancelled_run_and_a_new_job_share_a_key(self):
        # before 101 a key could be queued again while a cancelled job's run was
        # in flight; the upgrade leaves the key with the newer, pending job (the
        # unique index could not be built otherwise)
        old = tempfile.mkdtemp(prefix="sluice-schema-")
        try:
            for name in os.listdir(os.path.join(harness.SOURCE, "schema")):
                if name.endswith(".sql") and name < "101":
                    shutil.copy(os.path.join(harness.SOURCE, "schema", name), old)
            env = self.env({"SLUICE_SCHEMA_DIR": old})
            self.sluice("queue", "noop", "--at", "+1h", env=env)  # the old schema and registry
            worker = "00000000-0000-4000-8000-000000000001"
            cancelled = self.scalar("SELECT job_id FROM sluice.enqueue(NULL, 'noop', p_dedupe_key => 'k')")
            run = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
            self.scalar(f"SELECT sluice.cancel_job('{cancelled}')")
            pending = self.scalar("SELECT job_id FROM sluice.enqueue(NULL, 'noop', '{}', now() + interval '1 hour', "
                                  "p_dedupe_key => 'k')")
            self.assertNotEqual(pending, cancelled)
        finally:
            shutil.rmtree(old)
        self.assertIn("applied 101_inflight_runs.sql", self.sluice("migrate").stderr)
        self.assertEqual(self.sql(f"SELECT id, dedupe_key FROM sluice.scheduled_jobs "
                                  f"WHERE id IN ('{cancelled}', '{pending}') ORDER BY created_at"),
                         [{"id": cancelled, "dedupe_key": None}, {"id": pending, "dedupe_key": "k"}])
        self.assertEqual(self.scalar("SELECT job_id || ' ' || created FROM sluice.enqueue(NULL, 'noop', "
                                     "p_dedupe_key => 'k')"), f"{pending} false")
        self.scalar(f"SELECT sluice.finish_run('{run}', 'cancelled', NULL, 'cancelled', '', false, NULL, NULL)")
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{cancelled}'"),
                         "cancelled")

    # -------------------------------------------------------------- cancel, pause, resume

    def test_cancel_running_job(self):
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 60}').stdout.strip()
        with self.serve():
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            out = self.sluice("jobs", "cancel", job)
            self.assertIn("cancelling", out.stdout)
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'cancelled'") == 1, 10)
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"],
                         "cancelled")
        # cancelling it again changes nothing and says where it is
        self.assertEqual(self.sluice("jobs", "cancel", job).stdout, f"{job}  cancelled\n")

    def test_a_cancel_whose_notify_was_missed_arrives_with_the_lease_renewal(self):
        # the job is cancelled while the worker is not listening (no NOTIFY
        # reaches it): its next lease renewal says so and the run stops
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 60}').stdout.strip()
        with self.serve("--lease", "3") as d:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET status = 'cancelled', next_run_at = NULL "
                                    f"WHERE id = '{job}'")  # cancel_job() without its NOTIFY
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'cancelled'") == 1, 20,
                          "the worker never stopped the run of its cancelled job")
            run = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
            self.assertIn(f'msg="cancelling run: its job was cancelled" run={run} type=sleep\n', d.log())
        self.assertEqual(self.one(f"SELECT status, current_run_id FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"status": "cancelled", "current_run_id": None})

    def sleep_running(self):
        self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)

    def cancel_the_sleep(self, proc):
        """Once the foreground run of `sleep` is running, cancels its job."""
        self.sleep_running()
        job = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'sleep'")
        self.assertIn("cancelling", self.sluice("jobs", "cancel", job).stdout)

    def test_a_foreground_run_stops_when_its_job_is_cancelled(self):
        # `sluice run` does not LISTEN: the cancel reaches it with its lease renewal
        self.sluice("queue", "noop", "--at", "+1h")  # the schema
        _, out, err = self.while_running(["run", "sleep", "--params", '{"seconds": 600}', "--json"],
                                         self.cancel_the_sleep, env=self.env({"SLUICE_LEASE_SECONDS": "3"}))
        job = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'sleep'")
        outcome = json.loads(out)
        self.assertEqual((outcome["status"], outcome["error"], outcome["job_status"]),
                         ("cancelled", "cancelled", "cancelled"), err)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                     f"WHERE scheduled_job_id = '{job}'"), "cancelled")

    def test_a_foreground_run_stopped_by_a_signal_is_recorded_as_interrupted(self):
        # Ctrl-C, SIGTERM and a hung-up terminal (SIGHUP) each stop the run and
        # record it; SIGHUP killed the process, leaving the run running until
        # its lease ran out
        self.sluice("queue", "noop", "--at", "+1h")  # the schema
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with self.subTest(signal=sig.name):
                def interrupt(proc):
                    self.sleep_running()
                    proc.send_signal(sig)
                code, out, err = self.while_running(["run", "sleep", "--params", '{"seconds": 600}', "--json"],
                                                    interrupt)
                self.assertEqual(code, 128 + sig, err)  # 130 for Ctrl-C, as a shell says it
                outcome = json.loads(out)
                self.assertEqual((outcome["status"], outcome["error"], outcome["recorded"]),
                                 ("failed", "interrupted", True), err)
                self.assertEqual(self.one(f"SELECT status, error_message FROM sluice.scheduled_job_runs "
                                          f"WHERE id = '{outcome['run_id']}'"),
                                 {"status": "failed", "error_message": "interrupted"})

    def test_a_foreground_run_keeps_the_signals_ignored_at_its_start(self):
        # a signal ignored as the run starts (SIGHUP under nohup, SIGINT of a
        # job a script put in the background) stays ignored: the run goes on
        # until something else stops it, here a cancel of its job. SIGINT and
        # SIGTERM stopped it anyway.
        self.sluice("queue", "noop", "--at", "+1h")  # the schema
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with self.subTest(signal=sig.name):
                def signal_then_cancel(proc):
                    # its first log line: the run is under way, its signals watched
                    while "step 1" not in (line := self.read_line(proc, stream=proc.stderr)):
                        self.assertTrue(line, "the run ended before its first log line")
                    proc.send_signal(sig)
                    job = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'chatty' "
                                      "AND status = 'active'")
                    self.assertIn("cancelling", self.sluice("jobs", "cancel", job).stdout)
                _, _, err = self.while_running(["run", "chatty", "--params", '{"pause": 600}'], signal_then_cancel,
                                               env=self.env({"SLUICE_LEASE_SECONDS": "3"}), ignore=(sig,))
                run = re.search(r"^run (\S+) cancelled after", err, re.M)
                self.assertTrue(run, err)
                self.assertEqual(self.one(f"SELECT status, error_message FROM sluice.scheduled_job_runs "
                                          f"WHERE id = '{run[1]}'"),
                                 {"status": "cancelled", "error_message": "cancelled"}, err)

    def foreground_run_of_a_deleted_job(self, *args):
        # `sluice run sleep` whose job is deleted while it sleeps: its lease
        # renewal (every second) stops it; the run was deleted with its job, so
        # finish_runs has nothing left to record
        self.sluice("queue", "noop", "--at", "+1h")  # the schema

        def delete_the_job(proc):
            self.sleep_running()
            self.scalar("DELETE FROM sluice.scheduled_jobs WHERE job_type = 'sleep' RETURNING 1")
        result = self.while_running(["run", "sleep", "--params", '{"seconds": 600}', *args], delete_the_job,
                                    env=self.env({"SLUICE_LEASE_SECONDS": "3"}))
        self.assertEqual(self.count("sluice.scheduled_job_runs", "job_type = 'sleep'"), 0)
        return result

    def test_a_foreground_run_of_a_deleted_job_says_it_was_not_recorded(self):
        code, out, err = self.foreground_run_of_a_deleted_job("--json")
        outcome = json.loads(out)
        self.assertEqual((outcome["status"], outcome["error"], outcome["recorded"], outcome["job_status"]),
                         ("cancelled", "its job was deleted", False, None), err)
        self.assertEqual(code, 1, err)
        code, out, err = self.foreground_run_of_a_deleted_job()
        self.assertEqual((code, out), (1, ""), err)
        self.assertRegex(err, r"run \S+ cancelled after \d+\.\d\ds \(its job was deleted\), but its outcome "
                              r"was not recorded: the run was no longer running — its job was deleted, or its "
                              r"lease was lost")
        self.assertNotIn("could not be recorded", err)

    @contextlib.contextmanager
    def claimed_run_waiting_for_a_slot(self):
        """Three long chatty jobs under serve --concurrency 2: all three are
        claimed, two started. Yields the daemon, the three job ids and the id
        of the job whose claimed run waits for a slot."""
        jobs = [self.sluice("queue", "chatty", "--params", '{"pause": 600}').stdout.strip() for _ in range(3)]
        # a lease short enough for a pause to be seen soon (renewals every 2 s),
        # long enough for an ASan build sharing two cores with other tests to
        # renew in time (the fence, at 0.9 of it, drops the waiting run as lost)
        with self.serve("--concurrency", "2", "--lease", "6") as d:
            # all three claimed; two started (their first log line is flushed)
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 3
                          and self.count("sluice.scheduled_job_runs", "logs LIKE '%step 1%'") == 2, 30,
                          "the worker did not claim a run ahead")
            queued = self.scalar("SELECT scheduled_job_id FROM sluice.scheduled_job_runs WHERE logs = ''")
            yield d, jobs, queued

    def test_a_claimed_run_waiting_for_a_slot_is_dropped_when_cancelled(self):
        # a worker claims ahead of its free slots; a claimed run that has not
        # started when its job is cancelled must never start
        with self.claimed_run_waiting_for_a_slot() as (d, jobs, queued):
            self.assertIn("cancelling", self.sluice("jobs", "cancel", queued).stdout)
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                              f"WHERE scheduled_job_id = '{queued}'") == "cancelled", 20)
            self.assertRegex(d.log(), r'msg="dropping a claimed run before its start" run=[0-9a-f-]{36} '
                                      r'type=chatty reason=cancelled\n')
            for j in jobs:  # the two in flight go on
                if j != queued:
                    self.cancel_and_wait(j)
        self.assertEqual(self.sql(f"SELECT status, logs FROM sluice.scheduled_job_runs "
                                  f"WHERE scheduled_job_id = '{queued}'"), [{"status": "cancelled", "logs": ""}])
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{queued}'"), "cancelled")

    def test_logs_follow_of_a_job_whose_claimed_run_goes_back_waits_for_its_next(self):
        # the run a follow had was given back to its job before it started (the
        # job paused): the follow ended "run … is gone (pruned)", an error
        with self.claimed_run_waiting_for_a_slot() as (d, jobs, queued):
            err_file = tempfile.NamedTemporaryFile("w+", prefix="sluice-follow-", suffix=".err")
            self.addCleanup(err_file.close)
            follow = subprocess.Popen([pgfixture.sluice_bin(), "logs", "--follow", queued], env=self.env(),
                                      stdout=subprocess.PIPE, stderr=err_file, text=True)
            self.addCleanup(lambda: follow.poll() is None and follow.kill())
            # it reads the claimed run's log (empty: it has not started)
            self.wait_for(lambda: self.count("pg_stat_activity", "datname = current_database() AND pid <> "
                                                              "pg_backend_pid() AND query LIKE "
                                                              "'%substr(logs, $2::int + 1)%'"),
                          30, "the follow never read the claimed run")
            self.sluice("jobs", "pause", queued)
            self.wait_for(lambda: "given back" in open(err_file.name).read(), 30,
                          "the follow did not see the run given back")
            self.assertIsNone(follow.poll(), open(err_file.name).read())
            self.sluice("jobs", "cancel", queued)
            follow.communicate(timeout=60)
            for j in jobs:
                if j != queued:
                    self.cancel_and_wait(j)
        err = open(err_file.name).read()
        self.assertEqual(follow.returncode, 1, err)
        self.assertRegex(err, rf"^sluice: run [0-9a-f]{{8}} was given back to job {queued[:8]} before it "
                              rf"started: waiting for the job's next run\n"
                              rf"sluice: job {queued[:8]} cancelled\n$")
        self.assertNotIn("pruned", err)

    def test_a_claimed_run_waiting_for_a_slot_goes_back_when_its_job_is_paused(self):
        # pause: no new runs until resumed; a claimed run that has not started
        # is a new run, so it is given back to its job, which resume then runs
        with self.claimed_run_waiting_for_a_slot() as (d, jobs, queued):
            self.assertIn("paused", self.sluice("jobs", "pause", queued).stdout)
            try:
                self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                                 f"scheduled_job_id = '{queued}'") == 0,
                              20, "the paused job's claimed run was not given back")
            except AssertionError as e:
                raise AssertionError(f"{e}; the daemon's log:\n{d.log()}") from None
            self.assertRegex(d.log(), r'msg="dropping a claimed run before its start" run=[0-9a-f-]{36} '
                                      r'type=chatty reason=paused\n')
            self.assertEqual(self.one(f"SELECT status, current_run_id IS NULL AS free, next_run_at IS NOT NULL AS due "
                                      f"FROM sluice.scheduled_jobs WHERE id = '{queued}'"),
                             {"status": "paused", "free": True, "due": True})
            for j in jobs:
                if j != queued:
                    self.cancel_and_wait(j)
            self.sluice("jobs", "resume", queued)
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"scheduled_job_id = '{queued}' AND logs LIKE '%step 1%'") == 1, 20,
                          "the resumed job did not run")
            self.cancel_and_wait(queued)

    def cancel_and_wait(self, job):
        self.sluice("jobs", "cancel", job)
        self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                          f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number DESC "
                                          f"LIMIT 1") == "cancelled", 20)

    def test_a_run_failed_by_a_rescue_is_stopped_by_its_worker(self):
        # a worker that could not renew its lease in time (here: stopped) has had
        # its run failed by a rescue and the job retried; when it comes back it
        # must stop its own copy, not run it beside the retry
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 600}').stdout.strip()
        with self.serve("--lease", "3") as d:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            d.signal(signal.SIGSTOP)
            try:
                pgfixture.psql(self.db, "UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - "
                                        "interval '1 second' WHERE status = 'running'")
                self.assertEqual(self.scalar("SELECT count(*) FROM sluice.rescue_lost_runs()"), "1")
            finally:
                d.signal(signal.SIGCONT)
            d.wait_log("stopping run: its lease expired and it was failed", 20)
            line = next(x for x in d.log().splitlines() if "stopping run: its lease expired" in x)
            self.assertRegex(line, r" run=[0-9a-f-]{36} type=sleep$")
            # its own outcome finds the run failed already: not recorded, and said so
            failed = self.scalar(f"SELECT id FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}' "
                                 f"AND status = 'failed'")
            d.wait_log("run outcome not recorded: the run was no longer running", 20)
            line = next(x for x in d.log().splitlines() if "run outcome not recorded" in x)
            self.assertIn(failed, line)
            self.assertRegex(line, r"status=\"?failed")
            # with the run's type and its own error (stopped as its lease was lost)
            self.assertRegex(line, r' type=sleep .*error="lease lost: the run was failed after its lease expired"')
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                             f"scheduled_job_id = '{job}' AND status = 'running'") == 1, 20)
            self.cancel_and_wait(job)
        self.assertEqual([r["status"] for r in self.sql(f"SELECT status FROM sluice.scheduled_job_runs WHERE "
                                                        f"scheduled_job_id = '{job}' ORDER BY attempt_number")],
                         ["failed", "cancelled"])

    def test_a_claim_answered_after_its_lease_ran_out_does_not_start(self):
        # a worker's claim is answered only once the lease it gave has run out
        # (the worker was stopped meanwhile): a rescue may have failed the run
        # and its job may run elsewhere already, so the worker must not start it
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry
        self.trace_effects()
        self.slow_claims("trace", 2)
        with self.serve("--lease", "3") as d:
            self.wait_listening()
            job = self.sluice("queue", "trace", "--params", '{"pause": 2}').stdout.strip()
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity "
                                              "WHERE wait_event = 'PgSleep' AND datname = current_database()") == "1", 30,
                          "the claim never reached the trigger")
            d.signal(signal.SIGSTOP)  # the claim is answered while the worker is stopped
            try:
                self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
                self.scalar("DROP TRIGGER slow_claim ON sluice.scheduled_job_runs")
                self.wait_for(lambda: self.count("sluice.scheduled_job_runs",
                                                 "status = 'running' AND lease_expires_at < now()") == 1, 30)
                # another worker's rescue pass: the job is due again at once
                self.assertEqual(self.scalar("SELECT count(*) FROM sluice.rescue_lost_runs()"), "1")
            finally:
                d.signal(signal.SIGCONT)
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{job}'") == "completed", 30)
        runs = self.sql(f"SELECT id, status, attempt_number FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number")
        self.assertEqual([(r["attempt_number"], r["status"]) for r in runs], [(1, "failed"), (2, "completed")])
        # only the retry did anything: the run whose lease had run out never started
        effects = self.sql("SELECT run_id, kind FROM public.trace_effects ORDER BY at")
        self.assertEqual(effects, [{"run_id": runs[1]["id"], "kind": "start"},
                                   {"run_id": runs[1]["id"], "kind": "end"}], d.log())

    def test_a_foreground_claim_answered_too_late_gives_its_run_back(self):
        # `sluice run` whose claim is answered only after the fence's share of
        # the lease (the statement was that slow): a rescue may have failed the
        # run already and its job may run elsewhere, so it must not start; it
        # goes back to its job, as a worker gives back what it claimed too late
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry
        self.trace_effects()
        self.slow_claims("trace", 1.5)
        for args in ((), ("--json",)):
            proc = self.sluice("run", "trace", *args, env=self.env({"SLUICE_LEASE_SECONDS": "1"}), check=False)
            self.assertEqual((proc.returncode, proc.stdout), (1, ""), proc.stderr)
            self.assertRegex(proc.stderr, r"run \S+ \(trace\) not started: its claim came back \d+\.\d s after "
                                          r"it was sent, too late for its 1 s lease")
            self.assertIn("the run was given back to its job, which is due now", proc.stderr)
            self.assertNotIn("started\n", proc.stderr)
            self.assert_given_back("trace")
            self.assertEqual(self.count("public.trace_effects"), 0)
            self.scalar("DELETE FROM sluice.scheduled_jobs WHERE job_type = 'trace'")

    def test_a_cancel_is_final_when_the_run_in_flight_completes(self):
        # a foreground run does not hear the cancel and runs to its end: the run
        # is recorded as it went, the job stays cancelled. The run must outlast
        # the wait and the cancel below (a slow machine takes more than a
        # second or two for them), and end before its first lease renewal (a
        # third of the 60 s default lease), which would tell it of the cancel
        self.sluice("queue", "noop", "--at", "+1h")  # the schema
        proc = subprocess.Popen([pgfixture.sluice_bin(), "run", "sleep", "--params", '{"seconds": 6}', "--json"],
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            job = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'sleep'")
            self.assertIn("cancelling", self.sluice("jobs", "cancel", job).stdout)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0, err)
        outcome = json.loads(out)
        self.assertEqual((outcome["status"], outcome["job_status"]), ("completed", "cancelled"))
        self.assertEqual(self.one(f"SELECT status, current_run_id, next_run_at FROM sluice.scheduled_jobs "
                                  f"WHERE id = '{job}'"),
                         {"status": "cancelled", "current_run_id": None, "next_run_at": None})
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                     f"WHERE scheduled_job_id = '{job}'"), "completed")

    def test_what_a_run_ending_after_cancel_or_pause_makes_of_its_job(self):
        # every way a run can end, after its job was cancelled or paused: a cancel
        # is final (the run keeps its own outcome); a paused one-time job that
        # completes is done, a paused job that will be retried, or a recurring
        # one, stays paused with its next time kept for resume
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry; never due here
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        # schedule, action, how the run ends, retryable (a one-time job: with one
        # retry left, else none) → the job's status
        cases = [
            ("one_time", "cancel", "completed", True, "cancelled"),
            ("one_time", "cancel", "failed", False, "cancelled"),
            ("one_time", "cancel", "failed", True, "cancelled"),
            ("one_time", "cancel", "cancelled", False, "cancelled"),
            ("one_time", "cancel", "lost", True, "cancelled"),  # its worker died: rescued
            ("one_time", "cancel", "lost", False, "cancelled"),
            ("recurring", "cancel", "completed", True, "cancelled"),
            ("recurring", "cancel", "failed", False, "cancelled"),
            ("one_time", "pause", "completed", True, "completed"),
            ("one_time", "pause", "failed", True, "paused"),
            ("one_time", "pause", "failed", False, "failed"),
            ("one_time", "pause", "lost", True, "paused"),
            ("one_time", "pause", "lost", False, "failed"),
            ("recurring", "pause", "completed", True, "paused"),
            ("recurring", "pause", "failed", False, "paused"),
        ]
        for schedule, action, outcome, retryable, expected in cases:
            with self.subTest(schedule=schedule, action=action, outcome=outcome, retryable=retryable):
                if schedule == "one_time":
                    job = self.scalar(f"SELECT job_id FROM sluice.enqueue(NULL, 'noop', "
                                      f"p_max_retries => {1 if retryable else 0})")
                else:
                    job = self.scalar("SELECT sluice.schedule_job(NULL, 'noop', '* * * * *', 'UTC', '{}', now())")
                lease = 0.001 if outcome == "lost" else 600
                run = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, {lease})")
                self.assertEqual(self.scalar(f"SELECT sluice.{action}_job('{job}')"),
                                 "cancelling" if action == "cancel" else "paused")
                if outcome == "lost":
                    self.assertEqual(self.scalar(f"SELECT count(*) FROM sluice.rescue_lost_runs() "
                                                 f"WHERE run_id = '{run}'"), "1")
                else:
                    self.scalar(f"SELECT sluice.finish_run('{run}', '{outcome}', NULL, "
                                f"{'NULL' if outcome == 'completed' else repr(outcome)}, '', "
                                f"{'true' if retryable else 'false'}, now() + interval '1 hour', NULL)")
                j = self.one(f"SELECT status, current_run_id, next_run_at IS NOT NULL AS due "
                             f"FROM sluice.scheduled_jobs WHERE id = '{job}'")
                self.assertEqual(j["status"], expected)
                self.assertIsNone(j["current_run_id"])
                self.assertEqual(j["due"], expected == "paused")  # resume finds its time
                self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs WHERE id = '{run}'"),
                                 "failed" if outcome == "lost" else outcome)

    def test_show_says_a_paused_jobs_time_waits_for_resume(self):
        # a paused job whose time had come was shown as next run "… (now)" or
        # "(12s ago)", as if a worker were about to take it
        job = self.sluice("queue", "echo").stdout.strip()
        self.sluice("jobs", "pause", job)

        def next_run():
            lines = [l for l in self.sluice("show", job).stdout.splitlines() if "next run" in l]
            self.assertEqual(len(lines), 1)
            return lines[0]

        for past in ("0 seconds", "2 seconds", "1 minute"):
            self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() - interval '{past}' WHERE id = '{job}'")
            line = next_run()
            self.assertRegex(line, r"next run +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(paused: runs once resumed\)$")
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() + interval '2 hours 30 seconds' "
                 f"WHERE id = '{job}'")
        self.assertRegex(next_run(), r"\(in 2h if resumed by then; paused\)$")
        self.sluice("jobs", "resume", job)  # active again: the time as it is
        self.assertRegex(next_run(), r"\(in 2h\)$")
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() - interval '1 minute' WHERE id = '{job}'")
        self.assertRegex(next_run(), r"\(1m ago\)$")

    def test_pause_and_resume(self):
        job = self.sluice("queue", "echo").stdout.strip()
        self.sluice("jobs", "pause", job)
        # its time has come, but no worker takes it: not "due"
        listed = [line for line in self.sluice("jobs").stdout.splitlines() if line.startswith(job[:8])]
        self.assertEqual(len(listed), 1)
        self.assertIn(" on resume ", listed[0])
        self.assertNotIn(" due ", listed[0])
        other = self.sluice("queue", "echo", "--params", '{"message": "not paused"}').stdout.strip()
        with self.serve():
            # the daemon ran what it could: the paused job was due too, and was left alone
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{other}'") == "completed", 30)
            self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 0)
            self.sluice("jobs", "resume", job)
            self.wait_jobs_done(2)
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"],
                         "completed")
        missing = self.sluice("jobs", "pause", "00000000-0000-0000-0000-000000000000", check=False)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("no job with id", missing.stderr)

    def test_jobs_control_asked_for_the_state_a_job_is_in_changes_nothing(self):
        # one rule for cancel, pause and resume: a job already where the call
        # would put it is left alone (exit 0, its status printed); a job whose
        # state the call cannot change is refused (exit 2). A second cancel was
        # refused "already cancelled" where a second pause or resume was not.
        job = self.sluice("queue", "echo").stdout.strip()

        def control(action, status=0):
            before = self.scalar(f"SELECT status || ' ' || updated_at FROM sluice.scheduled_jobs WHERE id = '{job}'")
            proc = self.sluice("jobs", action, job, check=False)
            self.assertEqual(proc.returncode, status, proc.stdout + proc.stderr)
            after = self.scalar(f"SELECT status || ' ' || updated_at FROM sluice.scheduled_jobs WHERE id = '{job}'")
            return proc, before, after

        for action, status in (("pause", "paused"), ("resume", "active"), ("cancel", "cancelled")):
            proc, before, after = control(action)
            self.assertEqual(proc.stdout, f"{job}  {status}\n")
            self.assertNotEqual(before, after)
            proc, before, after = control(action)  # again: nothing changes
            self.assertEqual(proc.stdout, f"{job}  {status}\n")
            self.assertEqual(before, after)
        # a cancelled job cannot be paused or resumed
        for action, why in (("pause", "only active jobs can be paused"),
                            ("resume", "only paused jobs can be resumed")):
            proc, before, after = control(action, 2)
            self.assertIn(f"job {job} is cancelled: {why}", proc.stderr)
            self.assertEqual(before, after)
        # a job that ended otherwise cannot be cancelled
        self.sluice("run", "echo")
        done = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE status = 'completed'")
        proc = self.sluice("jobs", "cancel", done, check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn(f"job {done} is already completed: only active or paused jobs can be cancelled",
                      proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs", f"id = '{done}' AND status = 'completed'"), 1)
        # while the run of a cancelled job is still in flight, it says so
        other = self.sluice("queue", "echo").stdout.strip()
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        self.assertEqual(len(self.sql(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")), 1)
        for _ in range(2):
            self.assertEqual(self.sluice("jobs", "cancel", other).stdout, f"{other}  cancelling\n")

    def test_jobs_control_takes_the_ids_the_tables_show(self):
        a = self.sluice("queue", "echo", "--params", '{"message": "a"}').stdout.strip()
        b = self.sluice("queue", "echo", "--params", '{"message": "b"}').stdout.strip()
        # a shortened id (as `sluice jobs` shows it), in capitals too
        out = self.sluice("jobs", "pause", a[:8].upper(), b)
        self.assertEqual(out.stdout.splitlines(), [f"{a}  paused", f"{b}  paused"])
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'paused'"), 2)
        # a job named twice, as the same id or as a prefix beside its full id,
        # is changed and printed once, where it was first named
        out = self.sluice("jobs", "resume", a, b[:6], a[:8], b)
        self.assertEqual(out.stdout.splitlines(), [f"{a}  active", f"{b}  active"])
        for action, status in (("run-now", "due"), ("pause", "paused")):
            out = self.sluice("jobs", action, b, b)
            self.assertEqual(out.stdout, f"{b}  {status}\n", action)
        out = self.sluice("jobs", "pause", a, a)
        self.assertEqual(out.stdout, f"{a}  paused\n")
        # bad ids, before or after a good one: said plainly, and nothing is
        # changed (the good one beside them was resumed)
        for bad, msg in [("not-a-uuid", "jobs resume: 'not-a-uuid' is not a job id"),
                         ("ab", "jobs resume: 'ab' is not a job id"),
                         ("0000", "jobs resume: no job with id '0000'")]:
            for args in ([bad, a], [a, bad]):
                proc = self.sluice("jobs", "resume", *args, check=False)
                self.assertEqual(proc.returncode, 2, bad)
                self.assertIn(msg, proc.stderr)
                self.assertIn("jobs resume: no job was changed", proc.stderr)
                self.assertNotIn("syntax", proc.stderr)
                self.assertEqual(proc.stdout, "")
                self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'paused'"), 2)
        # a job the action cannot change is skipped; the others still are
        self.sluice("jobs", "cancel", b)
        proc = self.sluice("jobs", "resume", b, a, check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("only paused jobs can be resumed", proc.stderr)
        self.assertEqual(proc.stdout, f"{a}  active\n")
        # a run's id is not a job's
        self.sluice("run", "echo")
        run = self.scalar("SELECT id FROM sluice.scheduled_job_runs LIMIT 1")
        proc = self.sluice("jobs", "cancel", run, check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn(f"no job with id '{run}'", proc.stderr)

    # -------------------------------------------------------------- run now

    def job_row(self, job):
        return self.one(f"SELECT status, next_run_at, attempts, current_run_id, updated_at "
                        f"FROM sluice.scheduled_jobs WHERE id = '{job}'")

    def test_run_now_wakes_an_idle_daemon_and_a_recurring_job_keeps_its_slots(self):
        recurring = self.sluice("schedule", "echo", "--cron", "0 0 1 1 *",
                                "--params", '{"message": "yearly"}').stdout.strip()
        slot = self.job_row(recurring)["next_run_at"]
        later = self.sluice("queue", "echo", "--at", "+1h", "--params", '{"message": "later"}').stdout.strip()
        # a retry waiting out its backoff: the run it gets now is that attempt
        backoff = self.sluice("queue", "echo", "--at", "+1h", "--params", '{"message": "backoff"}').stdout.strip()
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET attempts = 1, last_error = 'earlier' "
                                f"WHERE id = '{backoff}'")
        warmup = self.sluice("queue", "noop").stdout.strip()
        # the poll is an hour away and no job is due before it: only the notice
        # of run-now can wake the daemon once it is idle
        with self.serve("--poll", "3600"):
            self.wait_for(lambda: self.job_row(warmup)["status"] == "completed", 30)
            self.wait_listening()
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                              "current_database() AND state <> 'idle' AND "
                                              "pid <> pg_backend_pid()") == "0", 30)
            out = self.sluice("jobs", "run-now", recurring[:8], later, backoff)
            self.assertEqual(out.stdout.splitlines(), [f"{j}  due" for j in (recurring, later, backoff)])
            self.assertEqual(out.stderr, "")
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'completed'") == 4, 30,
                          "the jobs made due were not run")
            self.wait_for(lambda: self.job_row(recurring)["next_run_at"] is not None, 30)
        runs = self.sql("SELECT scheduled_job_id AS job, attempt_number AS n FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id <> '{warmup}'")
        self.assertEqual(sorted((r["job"], r["n"]) for r in runs),
                         sorted([(recurring, 1), (later, 1), (backoff, 2)]))
        # the slot the recurring job was waiting for is still its next one:
        # run-now neither moved nor skipped it
        row = self.job_row(recurring)
        self.assertEqual((row["status"], row["next_run_at"], row["attempts"]), ("active", slot, 0))
        for job in (later, backoff):
            self.assertEqual(self.job_row(job)["status"], "completed")

    def test_run_now_runs_a_failed_one_time_job_again_with_its_retries_afresh(self):
        # echo retries once: a failing job runs twice, then fails
        job = self.sluice("queue", "echo", "--params", '{"fail": true}', "--dedupe-key", "k").stdout.strip()
        attempts = lambda: [r["attempt_number"] for r in self.sql(
            f"SELECT attempt_number FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}' "
            f"ORDER BY created_at")]
        with self.serve():
            self.wait_for(lambda: self.job_row(job)["status"] == "failed", 30)
            self.assertEqual(attempts(), [1, 2])
            # a job queued with its key since holds it: the failed one is not revived beside it
            other = self.sluice("queue", "echo", "--dedupe-key", "k", "--at", "+1h").stdout.strip()
            before = self.job_row(job)
            proc = self.sluice("jobs", "run-now", job, check=False)
            self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
            self.assertEqual(proc.stdout, "")
            self.assertIn(f"job {job} has dedupe key 'k', which job {other} (active) holds now", proc.stderr)
            self.assertEqual(self.job_row(job), before)
            self.sluice("jobs", "cancel", other)
            self.assertEqual(self.sluice("jobs", "run-now", job).stdout, f"{job}  due\n")
            self.wait_for(lambda: len(attempts()) == 4 and self.job_row(job)["status"] == "failed", 30)
        self.assertEqual(attempts(), [1, 2, 1, 2])

    def test_run_now_and_resume_say_when_no_worker_has_the_jobs_handler(self):
        # a job whose type the last daemon to sync the registry has no file for waits, due,
        # until a worker that has the file runs: run-now and resume said only
        # "due" and "active", and `logs --follow` then waited without a word
        later = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        paused = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        self.sluice("jobs", "pause", paused)
        self.scalar("UPDATE sluice.job_types SET available = false WHERE name = 'echo'")
        for action, job, status in (("run-now", later, "due"), ("resume", paused, "active")):
            with self.subTest(action):
                out = self.sluice("jobs", action, job)
                self.assertEqual(out.stdout, f"{job}  {status}\n")
                self.assertEqual(out.stderr, f"sluice: jobs {action}: note: job type 'echo' is unavailable (the "
                                             f"last daemon to sync the registry has no handler file for it): no "
                                             f"worker runs the job until one that has the file does\n")
        # and following the job's log says why it waits
        said = []

        def follow(proc):
            said.extend(self.read_line(proc, stream=proc.stderr) for _ in range(2))
            self.sluice("jobs", "cancel", later)
        self.while_running(["logs", "--follow", later], follow)
        self.assertIn("has no run yet (active, due ", said[0])
        self.assertEqual(said[1], "sluice: note: job type 'echo' is unavailable (the last daemon to sync the "
                                  "registry has no handler file for it): no worker runs the job until one that "
                                  "has the file does\n")
        self.scalar("UPDATE sluice.job_types SET available = true WHERE name = 'echo'")
        self.sluice("jobs", "pause", paused)
        self.assertEqual(self.sluice("jobs", "resume", paused).stderr, "")

    def test_run_now_refuses_a_job_it_cannot_run_and_changes_nothing(self):
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        running = self.sluice("queue", "echo").stdout.strip()
        self.assertEqual(len(self.sql(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")), 1)
        paused = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        self.sluice("jobs", "pause", paused)
        paused_recurring = self.sluice("schedule", "echo", "--cron", "@daily").stdout.strip()
        self.sluice("jobs", "pause", paused_recurring)
        self.sluice("run", "echo")
        completed = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE status = 'completed'")
        cancelled = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        self.sluice("jobs", "cancel", cancelled)
        archived = self.sluice("schedule", "echo", "--cron", "@hourly").stdout.strip()
        self.sluice("jobs", "cancel", archived)
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET status = 'archived' WHERE id = '{archived}'")
        unevaluable = self.scalar("SELECT sluice.schedule_job(NULL, 'echo', '0 0 30 2 *')")
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET status = 'failed', "
                                f"last_error = 'never fires' WHERE id = '{unevaluable}'")
        cases = [
            (running, f"is running now", None),
            (paused, "is paused: it runs only once resumed",
             "resume it (`sluice jobs resume`): a one-time job whose time has come runs at once"),
            (paused_recurring, "is paused: it runs only once resumed",
             "resume it (`sluice jobs resume`), then run it now"),
            (completed, "is completed: only active jobs and failed one-time jobs can be run now",
             "queue it again (`sluice queue`)"),
            (cancelled, "is cancelled: only active jobs and failed one-time jobs can be run now",
             "queue it again (`sluice queue`)"),
            (archived, "is archived: only active jobs and failed one-time jobs can be run now",
             "schedule it again (`sluice schedule`)"),
            (unevaluable, "is failed, as its schedule could not be evaluated: never fires",
             "give it a new cron expression or time zone (`sluice jobs edit`)"),
        ]
        for job, why, hint in cases:
            with self.subTest(why=why, job=job):
                before = self.job_row(job)
                proc = self.sluice("jobs", "run-now", job, check=False)
                self.assertEqual((proc.returncode, proc.stdout), (2, ""), proc.stderr)
                self.assertIn(f"sluice: error: job {job} ", proc.stderr)
                self.assertIn(why, proc.stderr)
                if hint:
                    self.assertIn(f"hint: {hint}", proc.stderr)
                self.assertEqual(self.job_row(job), before)
        run = self.job_row(running)["current_run_id"]
        self.assertIn(f"job {running} has a run in flight ({run})",
                      self.sluice("jobs", "run-now", running, check=False).stderr)
        # a job due already is left as it is, and so is its place among the due jobs
        due = self.sluice("queue", "echo").stdout.strip()
        before = self.job_row(due)
        proc = self.sluice("jobs", "run-now", paused, due, check=False)
        self.assertEqual((proc.returncode, proc.stdout), (2, f"{due}  due\n"))
        self.assertEqual(self.job_row(due), before)
        missing = self.sluice("jobs", "run-now", "00000000-0000-0000-0000-000000000000", check=False)
        self.assertEqual(missing.returncode, 2)
        self.assertIn("no job with id", missing.stderr)

    def test_run_now_waits_for_a_claim_that_holds_the_job(self):
        # a claim locks the job's row until it commits: run-now waits for it and
        # then sees the run in flight, instead of making a claimed job due again
        job = self.sluice("queue", "echo").stdout.strip()
        worker = "00000000-0000-4000-8000-000000000001"
        claim = subprocess.Popen(["psql", self.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], env=pgfixture.clean_env(),
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 text=True)
        run_now = None
        try:
            claim.stdin.write(f"BEGIN; SELECT count(*) FROM sluice.claim_jobs('{worker}', 10, 600);\n")
            claim.stdin.flush()
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                              "AND state = 'idle in transaction' AND query LIKE '%claim_jobs%'") == "1", 30)
            run_now = subprocess.Popen([pgfixture.sluice_bin(), "jobs", "run-now", job], env=self.env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.wait_for(lambda: self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                              "AND wait_event_type = 'Lock' AND query LIKE '%run_job_now%'") == "1", 30,
                          "run-now did not wait for the claim")
            claim.stdin.write("COMMIT;\n")
            claim.stdin.close()
            out, err = run_now.communicate(timeout=30)
        finally:
            if run_now and run_now.poll() is None:
                run_now.kill()
                run_now.communicate()
            if not claim.stdin.closed:
                claim.stdin.close()  # psql leaves; a claim not committed is rolled back
            claim.wait(30)
        self.assertEqual((run_now.returncode, out), (2, ""), err)
        self.assertIn(f"job {job} has a run in flight", err)
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 1)
        self.assertIsNone(self.job_row(job)["next_run_at"])

    # -------------------------------------------------------------- retention, priority

    def test_help_for_jobs_control_and_help_command(self):
        job = self.sluice("queue", "echo", "--at", "+1h").stdout.strip()
        for action in ("cancel", "pause", "resume", "run-now"):
            for flag in ("--help", "-h"):
                proc = self.sluice("jobs", action, flag)
                self.assertTrue(proc.stdout.startswith(f"usage: sluice jobs {action} JOB_ID…\n"), proc.stdout)
                self.assertEqual(proc.stderr, "")
            proc = self.sluice("jobs", action, job, "--help")
            self.assertIn("usage: sluice jobs", proc.stdout)
            self.assertEqual(proc.stderr, "")
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "active")
        proc = self.sluice("jobs", "cancel", "--bogus", job, check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("jobs cancel: unknown option '--bogus'", proc.stderr)
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "active")
        # `sluice help CMD` is `sluice CMD --help`
        self.assertEqual(self.sluice("help", "jobs").stdout, self.sluice("jobs", "--help").stdout)
        self.assertEqual(self.sluice("help", "jobs", "cancel").stdout,
                         self.sluice("jobs", "cancel", "--help").stdout)
        self.assertEqual(self.sluice("help", "schedule").stdout, self.sluice("schedule", "--help").stdout)
        self.assertIn("commands:", self.sluice("help").stdout)
        proc = self.sluice("help", "nope", check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("help: unknown command 'nope'", proc.stderr)

    def test_retention_archives_and_prunes(self):
        self.sluice("run", "echo")
        self.sluice("run", "echo")
        pgfixture.psql(self.db, "UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '8 days'; "
                                "UPDATE sluice.scheduled_job_runs SET completed_at = now() - interval '31 days'")
        r = self.one("SELECT * FROM sluice.apply_retention()")
        self.assertEqual((r["archived"], r["pruned"]), (2, 0))  # each job keeps its last run
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'archived'"), 2)

    def test_the_daemon_applies_retention_with_the_configured_ages(self):
        # a job that ended a day ago is archived under archive_after_days = 0.5
        # (not under the default 7), one that ended three hours ago is not; runs
        # that ended two days ago are pruned under prune_after_days = 1, but
        # each job's latest
        ended = {}
        for m in ("old", "young"):
            self.sluice("run", "echo", "--params", json.dumps({"message": m}))
            ended[m] = self.scalar(f"SELECT id FROM sluice.scheduled_jobs WHERE parameters ->> 'message' = '{m}'")
        old, young = ended["old"], ended["young"]
        job = self.sluice("schedule", "noop", "--cron", "@yearly").stdout.strip()
        for n in (1, 2):
            pgfixture.psql(self.db, f"INSERT INTO sluice.scheduled_job_runs (scheduled_job_id, job_type, "
                                    f"attempt_number, status, trigger_source, started_at, completed_at, "
                                    f"created_at) VALUES ('{job}', 'noop', 1, 'completed', 'scheduled', "
                                    f"now() - interval '3 days', now() - interval '2 days', "
                                    f"now() - interval '3 days' + interval '{n} minutes')")
        pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '1 day' "
                                f"WHERE id = '{old}'; "
                                f"UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '3 hours' "
                                f"WHERE id = '{young}'")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        conf = os.path.join(tmp, "sluice.conf")
        with open(conf, "w") as f:
            # passes every 1.2 s, the first that soon too (not half a minute on)
            f.write("archive_after_days = 0.5\nprune_after_days = 1\nretention_every_minutes = 0.02\n")
        with self.serve("--config", conf) as d:
            d.wait_log("msg=retention", timeout=20)
            self.assertIn("msg=retention archived_jobs=1 pruned_runs=1", d.log())
            self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{young}'"),
                             "completed")
            # a later pass archives the young job once it is old enough
            pgfixture.psql(self.db, f"UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '1 day' "
                                    f"WHERE id = '{young}'")
            d.wait_log("msg=retention archived_jobs=1 pruned_runs=0", timeout=20)
        self.assertEqual(d.log().count("msg=retention"), 2, d.log())
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{young}'"), "archived")
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{old}'"), "archived")
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{job}'"), 1)

    def test_retention_reads_null_as_the_default_and_refuses_negative_ages(self):
        for _ in range(3):
            self.sluice("run", "echo")
        jobs = [r["id"] for r in self.sql("SELECT id FROM sluice.scheduled_jobs ORDER BY created_at")]
        # one job ended long ago, one a day ago, one just now
        pgfixture.psql(self.db, f"""
            UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '8 days' WHERE id = '{jobs[0]}';
            UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '1 day' WHERE id = '{jobs[1]}'""")
        # a negative age would have archived every job that ended: refused, nothing changes
        for args, shown in (("'-1 day'", "-1 days"), ("NULL, '-5 minutes'", "-00:05:00")):
            self.assertIn(f"ERROR:  22023: apply_retention needs ages of zero or more, not {shown}\n",
                          self.sql_error(f"SELECT * FROM sluice.apply_retention({args})"))
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'archived'"), 0)
        # NULL is the default (7 days), as it is for the SQL API's other functions
        r = self.one("SELECT * FROM sluice.apply_retention(NULL, NULL)")
        self.assertEqual((r["archived"], r["pruned"]), (1, 0))
        self.assertEqual(self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE status = 'archived'"), jobs[0])

    def test_retention_leaves_a_job_whose_run_is_in_flight(self):
        # a job cancelled while its run is in flight is archived only once that
        # run has ended, and a running run is never pruned
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry; never due here
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        job = self.scalar("SELECT job_id FROM sluice.enqueue(NULL, 'noop')")
        first = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        self.scalar(f"SELECT sluice.finish_run('{first}', 'failed', NULL, 'boom', '', true, NULL, NULL)")
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}' RETURNING 1")
        second = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        self.assertEqual(self.scalar(f"SELECT sluice.cancel_job('{job}')"), "cancelling")
        # all long ago as retention sees it; the running run's row even says it
        # ended, and was made before the first (nothing in sluice writes such a
        # row, but whether a run is pruned must not depend on it)
        pgfixture.psql(self.db, f"""
            UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '8 days';
            UPDATE sluice.scheduled_job_runs SET completed_at = now() - interval '31 days';
            UPDATE sluice.scheduled_job_runs SET created_at = created_at - interval '1 day'
            WHERE id = '{second}'""")
        r = self.one("SELECT * FROM sluice.apply_retention()")
        self.assertEqual((r["archived"], r["pruned"]), (0, 0))
        self.assertEqual(self.one(f"SELECT status, current_run_id FROM sluice.scheduled_jobs WHERE id = '{job}'"),
                         {"status": "cancelled", "current_run_id": second})
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_job_runs WHERE id = '{second}'"),
                         "running")
        # once the run has ended, the job is archived in its turn
        self.scalar(f"SELECT sluice.finish_run('{second}', 'cancelled', NULL, 'cancelled', '', false, NULL, NULL)")
        self.scalar("UPDATE sluice.scheduled_jobs SET updated_at = now() - interval '8 days' RETURNING 1")
        r = self.one("SELECT * FROM sluice.apply_retention()")
        self.assertEqual((r["archived"], r["pruned"]), (1, 0))
        self.assertEqual(self.scalar(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'"), "archived")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 2)

    def test_retention_deletes_the_rows_of_workers_long_gone(self):
        # every daemon, foreground run and REPL adds a row to sluice.workers: the
        # rows of workers not live, last seen longer than prune_after ago and
        # holding no run in flight go; the runs keep their worker's id
        self.sluice("queue", "noop", "--at", "+1h")  # the schema and registry; never due here
        ids = {}
        for name, stopped, heartbeat in (
                ("stopped-old", "now() - interval '31 days'", "now() - interval '40 days'"),
                ("stopped-young", "now() - interval '29 days'", "now() - interval '40 days'"),
                ("silent-old", "NULL", "now() - interval '31 days'"),
                ("silent-busy", "NULL", "now() - interval '31 days'"),
                ("live", "NULL", "now()")):
            ids[name] = self.scalar(
                f"WITH w AS (INSERT INTO sluice.workers (hostname, pid, kind, lease_seconds, stopped_at, "
                f"heartbeat_at) VALUES ('{name}', 1, 'serve', 60, {stopped}, {heartbeat}) RETURNING id) "
                f"SELECT id FROM w")
        self.scalar("SELECT job_id FROM sluice.enqueue(NULL, 'noop')")
        run = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{ids['silent-busy']}', 10, 600)")
        self.scalar(f"UPDATE sluice.workers SET heartbeat_at = now() - interval '31 days' "
                    f"WHERE id = '{ids['silent-busy']}' RETURNING 1")  # the claim renewed it

        def left():
            return {r["hostname"] for r in self.sql("SELECT hostname FROM sluice.workers")} & set(ids)

        r = self.one("SELECT * FROM sluice.apply_retention()")
        self.assertEqual((r["archived"], r["pruned"], r["workers"]), (0, 0, 2))
        self.assertEqual(left(), {"stopped-young", "silent-busy", "live"})
        # at an age of nothing, all but the live one and the one with a run in flight
        r = self.one("SELECT * FROM sluice.apply_retention(NULL, '0 s')")
        self.assertEqual(r["workers"], 1)
        self.assertEqual(left(), {"silent-busy", "live"})
        # once its run has ended, it goes too; the run still names it
        self.scalar(f"SELECT sluice.finish_run('{run}', 'completed', NULL, NULL, '', true, NULL, NULL)")
        self.scalar(f"UPDATE sluice.workers SET heartbeat_at = now() - interval '31 days' "
                    f"WHERE id = '{ids['silent-busy']}' RETURNING 1")
        self.assertEqual(self.one("SELECT * FROM sluice.apply_retention()")["workers"], 1)
        self.assertEqual(left(), {"live"})
        self.assertEqual(self.scalar(f"SELECT worker_id FROM sluice.scheduled_job_runs WHERE id = '{run}'"),
                         ids["silent-busy"])

    def test_deleting_jobs_or_their_brand_deletes_their_runs(self):
        self.sluice("brands", "add", "acme")
        self.sluice("run", "echo")
        kept = self.scalar("SELECT id FROM sluice.scheduled_jobs")
        self.sluice("run", "echo", "--brand", "acme")
        self.sluice("run", "echo", "--brand", "acme")
        gone = self.scalar("SELECT id FROM sluice.scheduled_jobs WHERE brand_id IS NOT NULL "
                           "ORDER BY created_at LIMIT 1")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 3)
        self.scalar(f"DELETE FROM sluice.scheduled_jobs WHERE id = '{gone}' RETURNING 1")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 2)
        self.scalar("DELETE FROM sluice.brands WHERE name = 'acme' RETURNING 1")
        runs = self.sql("SELECT scheduled_job_id FROM sluice.scheduled_job_runs")
        self.assertEqual([r["scheduled_job_id"] for r in runs], [kept])

    def brand_rows(self):
        """Every row of the control plane's tables, to tell that a refused
        statement changed nothing (but the leases a live worker renews)."""
        rows = {t: self.sql(f"SELECT * FROM sluice.{t} ORDER BY 1")
                for t in ("brands", "scheduled_jobs", "scheduled_job_runs", "dataset_status")}
        for r in rows["scheduled_job_runs"]:
            del r["lease_expires_at"], r["heartbeat_at"]
        return rows

    def test_a_brand_whose_run_is_in_flight_is_not_deleted(self):
        # deleting a brand deletes its jobs; one whose run was under way had its
        # run deleted with it, stopped by its worker with nothing recorded
        # while its handler was writing the brand's rows. The delete is refused
        # until the run has ended; once it has, the brand goes with all it had
        for name in ("acme", "beta"):
            self.sluice("brands", "add", name)
        running = self.sluice("queue", "fresh_probe", "--brand", "acme", "--params", '{"sleep": 60}').stdout.strip()
        self.sluice("queue", "echo", "--brand", "acme", "--at", "+1h", "--dedupe-key", "k")
        self.sluice("schedule", "echo", "--brand", "acme", "--cron", "0 3 * * *")
        kept = self.sluice("queue", "echo", "--brand", "beta", "--at", "+1h").stdout.strip()
        with self.serve("--lease", "3") as d:
            self.wait_for(lambda: self.count("sluice.scheduled_job_runs", "status = 'running'") == 1, 30)
            run = self.scalar(f"SELECT current_run_id FROM sluice.scheduled_jobs WHERE id = '{running}'")
            before = self.brand_rows()
            err = self.sql_error("DELETE FROM sluice.brands WHERE name = 'acme'")
            self.assertIn(f"ERROR:  55006: brand 'acme' has a run in flight: fresh_probe run {run} of job "
                          f"{running}; deleting the brand deletes its jobs, and a run whose job is deleted is "
                          f"stopped with nothing recorded\n", err)
            self.assertIn("HINT:  cancel its job (sluice jobs cancel JOB_ID…) or let the run end, then delete "
                          "the brand; `sluice runs --brand 'acme' --status running` lists the runs", err)
            self.assertEqual(self.brand_rows(), before)
            # a cancel ends the run, recorded; then the brand can go
            self.sluice("jobs", "cancel", running)
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_job_runs "
                                              f"WHERE id = '{run}'") == "cancelled", 30)
            self.assertEqual(self.scalar("DELETE FROM sluice.brands WHERE name = 'acme' RETURNING name"),
                             "acme\nDELETE 1")
            self.assertEqual(self.sql("SELECT id FROM sluice.scheduled_jobs"), [{"id": kept}])
            self.assertEqual(self.count("sluice.scheduled_job_runs"), 0)
            self.assertEqual(self.count("sluice.dataset_status"), 0)
            # the daemon goes on with the other brand's work
            self.sluice("jobs", "run-now", kept)
            self.wait_for(lambda: self.scalar(f"SELECT status FROM sluice.scheduled_jobs "
                                              f"WHERE id = '{kept}'") == "completed", 30)
        self.assertNotIn("its job was deleted", d.log())
        self.assertNotIn("level=error", d.log())

    def test_a_brand_whose_foreground_run_is_in_flight_is_not_deleted(self):
        self.sluice("brands", "add", "acme")

        def delete_then_cancel(proc):
            self.sleep_running()
            before = self.brand_rows()
            self.assertIn("55006: brand 'acme' has a run in flight: sleep run",
                          self.sql_error("DELETE FROM sluice.brands"))
            self.assertEqual(self.brand_rows(), before)
            self.cancel_the_sleep(proc)
        code, _, err = self.while_running(["run", "sleep", "--brand", "acme", "--params", '{"seconds": 600}'],
                                          delete_then_cancel, env=self.env({"SLUICE_LEASE_SECONDS": "3"}))
        self.assertEqual(code, 1, err)
        self.assertRegex(err, r"run \S+ cancelled after \d+\.\d\ds: cancelled; then job cancelled\n$")
        self.assertEqual(self.scalar("DELETE FROM sluice.brands RETURNING name"), "acme\nDELETE 1")

    def test_truncate_keeps_the_rules_of_delete(self):
        # TRUNCATE fires no row trigger: truncating the jobs left every run
        # behind, and truncating the brands (CASCADE) went through while a run
        # of theirs was in flight, which was stopped with nothing recorded
        self.sluice("brands", "add", "acme")
        self.sluice("run", "echo")
        self.sluice("run", "echo", "--brand", "acme")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 2)
        self.scalar("TRUNCATE sluice.scheduled_jobs")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 0)

        def truncate_then_cancel(proc):
            self.sleep_running()
            before = self.brand_rows()
            err = self.sql_error("TRUNCATE sluice.brands CASCADE")
            self.assertRegex(err, r"ERROR:  55006: the brands have a run in flight, the first sleep run \S+ "
                                  r"of job \S+ \(brand 'acme'\); truncating the brands deletes their jobs")
            self.assertIn("HINT:  cancel their jobs (sluice jobs cancel JOB_ID…) or let the runs end", err)
            self.assertEqual(self.brand_rows(), before)
            self.cancel_the_sleep(proc)
        code, _, err = self.while_running(["run", "sleep", "--brand", "acme", "--params", '{"seconds": 600}'],
                                          truncate_then_cancel, env=self.env({"SLUICE_LEASE_SECONDS": "3"}))
        self.assertEqual(code, 1, err)
        self.sluice("run", "echo")  # a platform job: truncated with the brands' (CASCADE truncates the table)
        self.scalar("TRUNCATE sluice.brands CASCADE")
        for table in ("brands", "scheduled_jobs", "scheduled_job_runs", "dataset_status"):
            self.assertEqual(self.count(f"sluice.{table}"), 0, table)

    def test_a_brand_whose_runs_lease_ran_out_can_be_deleted(self):
        # a run whose worker is gone (its lease expired) is not in flight: it
        # does not hold its brand until some worker rescues it
        # (a name from before the rule for names, with an escape sequence in
        # it: the message does not pass it on to a terminal, and the hint
        # names the brand by its id)
        self.sluice("queue", "noop", "--at", "+1h")  # the schema
        self.scalar("ALTER TABLE sluice.brands DISABLE TRIGGER brands_check_name; "
                    "INSERT INTO sluice.brands (name) VALUES (E'Ac\\x1b[2Jme'); "
                    "ALTER TABLE sluice.brands ENABLE TRIGGER brands_check_name")
        brand = self.scalar("SELECT id FROM sluice.brands")
        self.sluice("queue", "noop", "--brand", brand)
        worker = "00000000-0000-4000-8000-000000000001"  # a worker that exists only in this test
        run = self.scalar(f"SELECT run_id FROM sluice.claim_jobs('{worker}', 10, 600)")
        err = self.sql_error("DELETE FROM sluice.brands")
        self.assertIn("55006: brand 'Ac?[2Jme' has a run in flight: noop run", err)
        self.assertIn(f"`sluice runs --brand {brand} --status running`", err)
        self.assertNotIn("\x1b", err)
        self.scalar(f"UPDATE sluice.scheduled_job_runs SET lease_expires_at = now() - interval '1 second' "
                    f"WHERE id = '{run}' RETURNING 1")
        self.assertEqual(self.scalar("DELETE FROM sluice.brands RETURNING id"), f"{brand}\nDELETE 1")
        self.assertEqual(self.count("sluice.scheduled_job_runs"), 0)

    def test_priority_orders_claims(self):
        low = self.sluice("queue", "echo", "--priority", "10").stdout.strip()
        high = self.sluice("queue", "echo", "--priority", "-5").stdout.strip()
        with self.serve("--concurrency", "1"):
            self.wait_jobs_done(2)
        order = [r["scheduled_job_id"] for r in
                 self.sql("SELECT scheduled_job_id FROM sluice.scheduled_job_runs ORDER BY started_at")]
        self.assertEqual(order, [high, low])

    def test_a_worker_claims_only_the_types_it_has_handlers_for(self):
        # a rolling deploy adds a job type: a worker that has no handler for it
        # yet leaves its jobs due for one that has, instead of failing them
        self.make_count_table()
        counted = self.sluice("queue", "count").stdout.strip()
        echoed = self.sluice("queue", "echo", "--params", '{"message": "hi"}').stdout.strip()
        older = self.env({"SLUICE_HANDLERS": harness.EXAMPLES})
        with self.serve("--no-watch", "--poll", "0.2", env=older) as d:
            # the claims that took these (queued after the count job) would have taken it too
            for job in (echoed, self.sluice("queue", "echo", "--params", '{"message": "again"}').stdout.strip()):
                self.wait_for(lambda: self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")
                              ["status"] == "completed", 30, "an echo job did not run")
            self.assertEqual(self.one(f"SELECT status, attempts, current_run_id FROM sluice.scheduled_jobs "
                                      f"WHERE id = '{counted}'"),
                             {"status": "active", "attempts": 0, "current_run_id": None})
            self.assertEqual(self.count("sluice.scheduled_job_runs", f"scheduled_job_id = '{counted}'"), 0)
            self.assertNotIn("unknown job type", d.log())
            self.assertEqual(d.stop(), 0, d.log())
        with self.serve("--no-watch"):
            self.wait_for(lambda: self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{counted}'")
                          ["status"] == "completed", 30, "the count job did not run on a worker that has it")
        self.assertEqual(self.count("public.count_runs"), 1)

    def test_a_claim_on_a_young_database_finds_its_jobs_through_indexes(self):
        # A claim's statements always use their generic plans
        # (120_claim_plans.sql). Planned while the jobs table is still empty,
        # as here, the update of the claimed jobs would be a sequential scan,
        # kept until the next ANALYZE: start_runs() plans without them. (A
        # CREATE OR REPLACE of either function in a later migration drops
        # these settings unless it gives them again.)
        self.sluice("queue", "noop")
        conf = {r["f"]: r["conf"] for r in self.sql(
            "SELECT oid::regprocedure::text AS f, array_to_string(proconfig, ',') AS conf FROM pg_proc "
            "WHERE pronamespace = 'sluice'::regnamespace AND proname IN ('claim_jobs', 'start_runs')")}
        self.assertEqual(conf, {
            "sluice.claim_jobs(uuid,integer,double precision)": None,  # calls the one below
            "sluice.claim_jobs(uuid,integer,double precision,text[])": "plan_cache_mode=force_generic_plan",
            "sluice.start_runs(uuid,uuid[],double precision)":
                "plan_cache_mode=force_generic_plan,enable_seqscan=off"})
        self.assertEqual(self.scalar("SELECT relpages FROM pg_class WHERE oid = 'sluice.scheduled_jobs'::regclass"),
                         "0")
        # the plans of the claim's statements, as notices
        proc = subprocess.run(
            ["psql", self.db, "-X", "-v", "ON_ERROR_STOP=1", "-Atc",
             "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
             "SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice; "
             "SELECT count(*) FROM sluice.claim_jobs(gen_random_uuid(), 10, 60)"],
            capture_output=True, text=True, env=pgfixture.clean_env())
        self.assertEqual((proc.returncode, proc.stdout.split()[-1:]), (0, ["1"]), proc.stderr)
        self.assertIn("Index Scan using scheduled_jobs_due on scheduled_jobs", proc.stderr)
        self.assertRegex(proc.stderr, r"Update on scheduled_jobs j\S*[^\n]*\n\s+->  (Bitmap Heap|Index) Scan")
        self.assertNotIn("Seq Scan on scheduled_jobs", proc.stderr)


class PostgresRestart(harness.OwnClusterTest):
    """A daemon on its own embedded cluster, which is stopped and started again."""

    home_prefix = "sluice-restart-"

    def start_with_a_run(self, job_type, params, lease):
        """Queues a job, starts a daemon with `lease`, waits until the run is in
        flight; returns (job id, database url, daemon)."""
        env = self.own_env
        job = self.sluice("queue", job_type, "--params", params, env=env).stdout.strip()
        url = self.sluice("db", "url", env=env).stdout.strip()
        d = self.serve("--lease", lease, env=env)
        self.wait_for(lambda: pgfixture.psql(url, "SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  "WHERE status = 'running'") == "1", 30)
        return job, url, d

    @contextlib.contextmanager
    def gate(self):
        """A loopback HTTP server whose GET / is held until the test releases it,
        and a handler type `gate` (in a directory of this test's) whose run
        requests params.url. Yields the server's URL, an event set when a request
        arrives and the event that releases it."""
        arrived, release = threading.Event(), threading.Event()

        class Held(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                arrived.set()
                release.wait(120)
                body = b"open"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        handlers = tempfile.mkdtemp(prefix="sluice-gate-")
        with open(os.path.join(handlers, "gate.lua"), "w") as f:
            f.write('return {\n'
                    '  label = "Gate",\n'
                    '  params = { url = { type = "string", required = true } },\n'
                    '  max_retries = 0,\n'
                    '  run = function(job)\n'
                    '    job.log("waiting")\n'
                    '    local res, err = sluice.http.get(job.params.url, { timeout = 120 })\n'
                    '    if not res then error(err) end\n'
                    '    job.log("released")\n'
                    '    return { status = res.status }\n'
                    '  end,\n'
                    '}\n')
        self.own_env["SLUICE_HANDLERS"] += ":" + handlers
        for k in [k for k in self.own_env if "proxy" in k.lower()]:
            del self.own_env[k]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/", arrived, release
        finally:
            release.set()
            server.shutdown()
            server.server_close()
            shutil.rmtree(handlers, ignore_errors=True)

    def test_daemon_survives_a_postgres_restart(self):
        env = self.own_env
        with self.gate() as (gate_url, arrived, release):
            inflight, url, d = self.start_with_a_run("gate", json.dumps({"url": gate_url}), "30")
            self.assertTrue(arrived.wait(30), "the run never reached the gate")
            # the database goes away while the run is in flight (held at the
            # gate), and the run ends while it is down
            self.sluice("db", "stop", env=env)
            d.wait_log("database connection failed", timeout=30)
            self.assertIsNone(d.proc.poll(), "the daemon must survive the database going away")
            self.assertNotIn("msg=released", d.log())
            release.set()
            d.wait_log("msg=released ", timeout=30)
            self.sluice("db", "start", env=env)
            # its outcome is recorded once the database is back, not lost
            self.wait_for(lambda: pgfixture.psql(url, f"SELECT status FROM sluice.scheduled_jobs "
                                                      f"WHERE id = '{inflight}'") == "completed", 40,
                          "the run in flight during the outage was not recorded")
        runs = json.loads(pgfixture.psql(url, f"SELECT json_agg(json_build_object('status', status, "
                                              f"'result', result, 'logs', logs)) FROM sluice.scheduled_job_runs "
                                              f"WHERE scheduled_job_id = '{inflight}'"))
        self.assertEqual([(r["status"], r["result"]) for r in runs], [("completed", {"status": 200})])
        self.assertIn("released", runs[0]["logs"])
        # the outage said as it began and as it ended, not at each statement retried
        self.assertEqual(d.log().count("database connection failed; retrying until it is back"), 1, d.log())
        self.assertIn("database connection back", d.log())
        self.assertNotIn("claiming and recording runs failed", d.log())
        job = self.sluice("queue", "echo", "--params", '{"message": "after restart"}', env=env).stdout.strip()
        self.wait_for(lambda: pgfixture.psql(url, f"SELECT status FROM sluice.scheduled_jobs "
                                                  f"WHERE id = '{job}'") == "completed", 40,
                      "the daemon did not carry on after the restart")
        self.assertEqual(d.stop(), 0, d.log())
        self.assertEqual(pgfixture.psql(url, "SELECT count(*) FROM sluice.scheduled_job_runs "
                                             "WHERE status = 'running'"), "0")

    def test_a_worker_cut_off_from_the_database_past_its_lease_stops_its_runs(self):
        # the database is out of reach for longer than the lease: other workers
        # may have failed this worker's runs and retried them by now, so it stops
        # them itself (the fence) instead of running them beside those retries;
        # once the database is back the stop is recorded and the job retried
        env = self.own_env
        job, url, d = self.start_with_a_run("sleep", '{"seconds": 600}', "3")
        self.sluice("db", "stop", env=env)
        d.wait_log("stopping every run: the database has not renewed this process's leases", timeout=20)
        self.assertIsNone(d.proc.poll(), d.log())
        self.sluice("db", "start", env=env)
        self.wait_for(lambda: pgfixture.psql(url, f"SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  f"WHERE scheduled_job_id = '{job}'") == "2", 40,
                      "the job was not run again after its run was stopped")
        first = pgfixture.psql(url, f"SELECT status || ' ' || error_message FROM sluice.scheduled_job_runs "
                                    f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number LIMIT 1")
        self.assertRegex(first, r"^failed (lease lost: no lease renewal succeeded for \d+ s \(the lease is 3 s\)"
                                r"|worker lost: lease expired at )")
        self.assertEqual(pgfixture.psql(url, f"SELECT sluice.cancel_job('{job}')"), "cancelling")
        self.assertEqual(d.stop(), 0, d.log())

    def test_a_daemon_stopped_while_the_database_is_down_leaves_after_its_lease(self):
        # SIGTERM while the database is down: the grace period ended, but the
        # daemon waited for the database to record its runs' outcomes for ever,
        # though once the lease has passed other workers' rescue does that
        env = self.own_env
        job = self.sluice("queue", "sleep", "--params", '{"seconds": 600}', env=env).stdout.strip()
        url = self.sluice("db", "url", env=env).stdout.strip()
        # a lease well past the grace period: the SIGTERM below comes a moment
        # after the outage, and the run's lease must outlast that moment and
        # the grace period, or it is stopped as lost before the grace ends
        d = self.serve("--lease", "6", "--grace", "1", env=env)
        self.wait_for(lambda: pgfixture.psql(url, "SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  "WHERE status = 'running'") == "1", 30)
        self.sluice("db", "stop", env=env)
        d.wait_log("database connection failed", timeout=30)
        # it leaves by itself (it waited for ever: a bound of ten times the
        # grace and lease), and says why, with exit 1
        self.assertEqual(d.stop(timeout=40), 1, d.log())
        left = "the database did not answer: stopping without recording every outcome"
        self.assertIn(left, d.log())
        # not at once: a lease (6 s) after its grace period (1 s) ended, by its
        # own log (the loop's clock may lag the log's by a little)
        stopping = d.logged_at("stopping: no new claims")
        grace_over = d.logged_at('grace period over: cancelling 1 run"')
        self.assertGreaterEqual(grace_over - stopping, 1 - 0.25, d.log())
        self.assertGreaterEqual(d.logged_at(left) - grace_over, 6 - 0.25, d.log())
        # the run it cancelled is logged all the same, saying it was not recorded
        self.assertRegex(d.log(), r'msg="run failed" run=\S+ type=sleep seconds=\S+ error=shutdown '
                                  r'then="not recorded: the database did not answer')
        # the job is not lost: a worker's rescue fails the run and runs it again
        self.sluice("db", "start", env=env)
        d2 = self.serve("--lease", "3", env=env)
        self.wait_for(lambda: pgfixture.psql(url, f"SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  f"WHERE scheduled_job_id = '{job}'") == "2", 40,
                      "the job was not run again after the daemon left")
        self.assertEqual(pgfixture.psql(url, f"SELECT sluice.cancel_job('{job}')"), "cancelling")
        self.assertEqual(d2.stop(), 0, d2.log())

    def test_a_claim_outlives_a_postgres_crash(self):
        # Postgres crashes moments after a worker claimed a job: the claim must
        # have been on disk before the run started, or the job would be due
        # again after recovery while its run is in flight, and run twice at once
        env = self.own_env
        self.sluice("queue", "noop", "--at", "+1h", env=env)  # the cluster and schema
        url = self.sluice("db", "url", env=env).stdout.strip()
        # a slow WAL writer: nothing commits lazily before the crash
        pgfixture.psql(url, "ALTER SYSTEM SET wal_writer_delay = '10s'")
        pgfixture.psql(url, "SELECT pg_reload_conf()")
        job, url, d = self.start_with_a_run("sleep", '{"seconds": 600}', "6")
        run = pgfixture.psql(url, "SELECT id FROM sluice.scheduled_job_runs WHERE status = 'running'")
        self.crash_postgres(self.home, env)
        # the worker renews its run's lease again, and nothing else runs the job
        self.wait_for(lambda: pgfixture.psql(url, f"SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  f"WHERE id = '{run}' AND heartbeat_at > "
                                                  f"pg_postmaster_start_time()", check=False) == "1", 30,
                      "the run in flight was not renewed after the crash")
        self.assertEqual(pgfixture.psql(url, f"SELECT id FROM sluice.scheduled_job_runs "
                                             f"WHERE scheduled_job_id = '{job}'"), run)
        self.assertNotIn("its job was deleted", d.log())
        self.assertEqual(pgfixture.psql(url, f"SELECT sluice.cancel_job('{job}')"), "cancelling")
        self.assertEqual(d.stop(), 0, d.log())

if __name__ == "__main__":
    harness.main()
