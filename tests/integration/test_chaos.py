#!/usr/bin/env python3
"""Faults together: workers sharing one database while one is stopped past its
lease and continued, one is killed and replaced, Postgres restarts under them
(stopped, and crashed), jobs are cancelled, paused and resumed, and the same
dedupe keys are queued from several threads at once. The `trace` handler
records each run's start and end (with the database's clock), so that the end
state can be checked against the promises of docs/operations.md: every job
reaches the state it should, no two runs of one job ever worked at the same
time, nothing is left running, and the runs table agrees with what the
handlers did.

A run of a stopped worker is not working while the process is stopped: two
runs of a job overlap only if one of them did something (recorded its start or
its end) after the other had started and before it stopped for good.

The faults and the jobs come from a random generator with a fixed seed, which
is printed; SLUICE_CHAOS_SEED sets another. (The schedule of processes and
timers still differs from one run to the next.)"""

import concurrent.futures
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import harness
import pgfixture

LEASE = 3
WORKERS = 3
JOBS = 240  # one-time jobs, due at random times over SPREAD seconds
SPREAD = 25
FAILING = 6  # one-time jobs whose every run fails: one retry, then failed
RECURRING = 3
DEDUPE_KEYS = ["alpha", "beta", "gamma"]
DEDUPE_THREADS = 4


class Chaos(harness.OwnClusterTest):
    """The workers share a cluster of their own, which the test restarts."""

    home_prefix = "sluice-chaos-"

    # -------------------------------------------------------------- helpers

    def q(self, sql):
        return json.loads(pgfixture.psql(self.url, f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t"))

    def worker(self):
        return self.serve("--lease", str(LEASE), "--concurrency", "4", "--grace", "10",
                          env=self.own_env)

    def serving(self, *args, role=None):
        """A daemon (serve args) on the test's own cluster, with its schema and
        registry in place (self.url set), once it serves. With a role, it
        connects as that role: one of its own, not a superuser, granted what
        docs/database.md says it needs."""
        self.sluice("queue", "noop", "--at", "+1h", env=self.own_env)
        self.url = self.sluice("db", "url", env=self.own_env).stdout.strip()
        env = self.own_env
        if role:
            pgfixture.psql(self.url, f"CREATE ROLE {role} LOGIN; "
                                     f"GRANT USAGE ON SCHEMA sluice TO {role}; "
                                     f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sluice TO {role}; "
                                     f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA sluice TO {role}")
            user = re.match(r"postgres(?:ql)?://([^@/]*)@", self.url).group(1)
            env = dict(env, DATABASE_URL=self.url.replace(f"{user}@", f"{role}@", 1))
        d = self.serve(*args, env=env)
        d.wait_log("sluice serving")
        return d

    def start_sleep_runs(self, n, seconds):
        """n jobs of the sleep type, due now; returns once their n runs started."""
        pgfixture.psql(self.url, f"""
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT 'sleep', '{{"seconds": {seconds}}}', now() FROM generate_series(1, {n})""")
        self.wait_for(lambda: self.q("SELECT 1 FROM sluice.scheduled_job_runs WHERE status = 'running' "
                                     f"HAVING count(*) = {n}"), 30, "the runs did not start")

    def wait_sleep_jobs_completed(self):
        self.wait_for(lambda: not self.q("SELECT 1 FROM sluice.scheduled_jobs WHERE job_type = 'sleep' "
                                         "AND status <> 'completed'"), 60, "the jobs did not all complete")

    def end_daemon_sessions(self):
        """Ends the daemons' database sessions: the sessions they open next
        take the database's and roles' settings as they are now."""
        pgfixture.psql(self.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'sluice' AND pid <> pg_backend_pid()")

    def busy(self, workers, rnd):
        """The index of a worker (a random one) that has a run in flight."""
        def ids():
            return [i for i, d in enumerate(workers) if self.q(
                f"SELECT 1 FROM sluice.scheduled_job_runs WHERE status = 'running' "
                f"AND worker_id = '{d.worker_id()}'")]
        return rnd.choice(self.wait_for(ids, 30, "no worker had a run in flight"))

    def hold(self, d, seconds):
        """SIGSTOP for `seconds`, then SIGCONT."""
        d.signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            d.signal(signal.SIGCONT)

    def try_each(self, action, jobs, expected):
        """sluice.<action>_job() on each job; the ones it took."""
        took = []
        for job in jobs:
            if pgfixture.psql(self.url, f"SELECT sluice.{action}_job('{job}')", check=False) in expected:
                took.append(job)
        return took

    # -------------------------------------------------------------- the scenario

    def test_faults_together_lose_nothing_and_never_run_a_job_twice_at_once(self):
        seed = int(os.environ.get("SLUICE_CHAOS_SEED", "20261127"))
        sys.stderr.write(f"\nchaos seed {seed} (SLUICE_CHAOS_SEED={seed} replays it)\n")
        rnd = random.Random(seed)
        began = time.monotonic()

        self.sluice("queue", "noop", "--at", "+1h", env=self.own_env)  # the cluster, schema and registry
        self.url = self.sluice("db", "url", env=self.own_env).stdout.strip()
        pgfixture.psql(self.url, "CREATE TABLE public.trace_effects (job_id uuid, run_id uuid, attempt int, "
                                 "kind text, at timestamptz DEFAULT clock_timestamp())")
        plain = [{"n": i, "pause": round(rnd.uniform(0.1, 0.8), 2), "due": round(rnd.uniform(0, SPREAD), 2)}
                 for i in range(JOBS)]
        pgfixture.psql(self.url, f"""
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT 'trace', jsonb_build_object('n', x -> 'n', 'pause', x -> 'pause'),
                   now() + make_interval(secs => (x ->> 'due')::float8)
            FROM jsonb_array_elements('{json.dumps(plain)}'::jsonb) x""")
        pgfixture.psql(self.url, f"""
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at, max_retries)
            SELECT 'trace', jsonb_build_object('n', -g, 'fail', true), now() + make_interval(secs => g * 2), 1
            FROM generate_series(1, {FAILING}) g""")
        for _ in range(RECURRING):
            pgfixture.psql(self.url, "SELECT sluice.schedule_job(NULL, 'trace', '* * * * *', 'UTC', "
                                     "'{\"pause\": 0.3}', now())")
        # a slow database, for one worker at a time: its claims take a second
        # (and say whose they are), so that it can be stopped with one in flight
        pgfixture.psql(self.url, """CREATE TABLE public.slow_claims (worker_id uuid);
            CREATE FUNCTION public.slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.worker_id IN (SELECT worker_id FROM public.slow_claims) THEN
                    PERFORM set_config('application_name', 'claiming for ' || NEW.worker_id, true);
                    PERFORM pg_sleep(1);
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER slow_claim BEFORE INSERT ON sluice.scheduled_job_runs
                FOR EACH ROW EXECUTE FUNCTION public.slow_claim()""")
        plain_ids = [r["id"] for r in self.q("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'trace' "
                                             "AND schedule_type = 'one_time' AND dedupe_key IS NULL "
                                             "AND NOT coalesce((parameters ->> 'fail')::boolean, false)")]

        workers = [self.worker() for _ in range(WORKERS)]
        self.wait_for(lambda: self.q("SELECT 1 FROM sluice.scheduled_job_runs WHERE status = 'completed'"), 60,
                      "no run completed")

        # the same keys queued from several threads at once, all along (held
        # while Postgres restarts: an enqueue cut off there has no known answer)
        gate = threading.Semaphore(DEDUPE_THREADS)
        stop = threading.Event()
        answers = []  # (key, job id, created)

        def enqueue(thread):
            own = random.Random(seed * 100 + thread)
            while not stop.is_set():
                key = own.choice(DEDUPE_KEYS)
                with gate:
                    out = pgfixture.psql(self.url, f"SELECT job_id || ' ' || created FROM sluice.enqueue(NULL, "
                                                   f"'trace', '{{\"pause\": 0.3}}', NULL, 0, '{key}')")
                job, created = out.split()
                answers.append((key, job, created == "true"))
                time.sleep(own.uniform(0.05, 0.3))

        def gate_closed():
            for _ in range(DEDUPE_THREADS):
                gate.acquire()

        def gate_open():
            for _ in range(DEDUPE_THREADS):
                gate.release()

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=DEDUPE_THREADS)
        enqueuers = [pool.submit(enqueue, t) for t in range(DEDUPE_THREADS)]
        cancelled, paused = [], []
        try:
            # a worker stopped for longer than its lease, then continued
            self.hold(workers[self.busy(workers, rnd)], LEASE + 2)
            # cancel some jobs and pause others
            picks = rnd.sample(plain_ids, 20)
            cancelled = self.try_each("cancel", picks[:10], ("cancelling", "cancelled"))
            paused = self.try_each("pause", picks[10:], ("paused",))
            # a worker killed, and another started in its place
            victim = self.busy(workers, rnd)
            workers[victim].kill()
            workers[victim] = self.worker()
            time.sleep(rnd.uniform(0.5, 2))
            # Postgres restarted under them all
            gate_closed()
            try:
                self.sluice("db", "stop", env=self.own_env)
                time.sleep(rnd.uniform(1, LEASE + 1))
                self.sluice("db", "start", env=self.own_env)
            finally:
                gate_open()
            time.sleep(rnd.uniform(1, 3))
            # and crashed: what was committed lazily may be lost
            gate_closed()
            try:
                self.crash_postgres(self.home, self.own_env)
            finally:
                gate_open()
            time.sleep(rnd.uniform(1, 3))
            # (a paused job whose run in flight completed is done: nothing to resume)
            self.try_each("resume", paused, ("active",))
            self.assertEqual(self.q("SELECT id FROM sluice.scheduled_jobs WHERE status = 'paused'"), [])
            # a worker held past its lease while its claim is in flight: the
            # claim is answered when the worker goes on, too late for its runs
            d = workers[rnd.randrange(WORKERS)]
            pgfixture.psql(self.url, f"INSERT INTO public.slow_claims VALUES ('{d.worker_id()}')")
            self.wait_for(lambda: pgfixture.psql(self.url, f"SELECT count(*) FROM pg_stat_activity WHERE "
                                                           f"application_name = 'claiming for {d.worker_id()}' "
                                                           f"AND wait_event = 'PgSleep'") != "0", 30,
                          "the worker never claimed")
            d.signal(signal.SIGSTOP)
            try:
                pgfixture.psql(self.url, "DELETE FROM public.slow_claims")
                time.sleep(LEASE + rnd.uniform(1, 3))
            finally:
                d.signal(signal.SIGCONT)
        finally:
            stop.set()
            for f in enqueuers:
                f.result(timeout=120)
            pool.shutdown()

        def settled():
            left = self.q("SELECT id FROM sluice.scheduled_jobs WHERE job_type = 'trace' AND ("
                          "(schedule_type = 'one_time' AND status IN ('active', 'paused')) OR "
                          "(schedule_type = 'recurring' AND (current_run_id IS NOT NULL OR next_run_at IS NULL "
                          "OR extract(microseconds FROM next_run_at) % 60000000 <> 0 OR NOT EXISTS ("
                          "SELECT 1 FROM sluice.scheduled_job_runs r WHERE r.scheduled_job_id = "
                          "scheduled_jobs.id AND r.status = 'completed'))))")
            return not left
        self.wait_for(settled, 180, "jobs did not all settle")
        for d in workers:
            self.assertEqual(d.stop(), 0, d.log())

        # ---------------------------------------------------------- the end state
        logs = "\n".join(d.log() for d in self.daemons)
        errors = self.q("SELECT split_part(regexp_replace(error_message, '^\\S+\\.lua:\\d+: ', ''), ':', 1) "
                        "AS error, count(*) AS n "
                        "FROM sluice.scheduled_job_runs WHERE status <> 'completed' GROUP BY 1 ORDER BY 2 DESC")
        not_completed = ", ".join(f"{e['n']} {e['error']}" for e in errors)
        sys.stderr.write(f"chaos seed {seed}: {time.monotonic() - began:.0f} s; runs not completed: "
                         f"{not_completed}; "
                         f"fenced {logs.count('stopping every run')}, "
                         f"claims too late {logs.count('their claim was answered too late')}\n")
        jobs = {r["id"]: r for r in self.q(
            "SELECT id, status, schedule_type, dedupe_key, current_run_id, "
            "coalesce((parameters ->> 'fail')::boolean, false) AS failing "
            "FROM sluice.scheduled_jobs WHERE job_type = 'trace'")}
        runs = {r["id"]: r for r in self.q(
            "SELECT id, scheduled_job_id AS job, attempt_number AS attempt, status, worker_id, error_message, "
            "CASE WHEN error_message LIKE 'worker lost: lease expired%' "
            "THEN (extract(epoch FROM completed_at) * 1000000)::bigint END AS rescued_at "
            "FROM sluice.scheduled_job_runs WHERE job_type = 'trace'")}
        effects = self.q("SELECT job_id AS job, run_id AS run, attempt, kind, "
                         "(extract(epoch FROM at) * 1000000)::bigint AS at FROM public.trace_effects ORDER BY at")
        self.assertEqual(self.q("SELECT id FROM sluice.scheduled_job_runs WHERE status = 'running'"), [])
        self.assertEqual([j for j in jobs.values() if j["current_run_id"]], [])

        # every job is where it should be
        for job, j in jobs.items():
            if j["schedule_type"] == "recurring":
                expected = "active"
            elif job in cancelled:
                expected = "cancelled"
            elif j["failing"]:
                expected = "failed"
            else:
                expected = "completed"
            self.assertEqual(j["status"], expected, f"job {job}")
        self.assertEqual(len(jobs), JOBS + FAILING + RECURRING + len({a[1] for a in answers}))

        # attempts: one-time jobs count 1, 2, … with every run but the last failed;
        # a completed one ran through once, a failed one exhausted its retry
        by_job = {}
        for r in runs.values():
            by_job.setdefault(r["job"], []).append(r)
        for job, j in jobs.items():
            rs = sorted(by_job.get(job, []), key=lambda r: r["attempt"])
            if j["schedule_type"] == "recurring":
                self.assertIn("completed", [r["status"] for r in rs], f"recurring job {job} never ran")
                continue
            self.assertEqual([r["attempt"] for r in rs], list(range(1, len(rs) + 1)), f"job {job}: {rs}")
            self.assertTrue(all(r["status"] == "failed" for r in rs[:-1]), f"job {job}: {rs}")
            if j["status"] == "completed":
                self.assertEqual(rs[-1]["status"], "completed", f"job {job}: {rs}")
            if j["status"] == "failed":
                self.assertEqual(len(rs), 2, f"job {job}: {rs}")
                self.assertEqual(rs[-1]["status"], "failed", f"job {job}: {rs}")

        # the runs table agrees with what the handlers did: each effect is a run's,
        # each run starts once and ends at most once, and a completed run did both
        seen = {}
        for e in effects:
            r = runs.get(e["run"])
            self.assertIsNotNone(r, f"an effect of a run that is not recorded: {e}")
            self.assertEqual((e["job"], e["attempt"]), (r["job"], r["attempt"]), e)
            seen.setdefault(e["run"], []).append(e["kind"])
        for run, kinds in seen.items():
            self.assertIn(kinds, (["start"], ["start", "end"]), f"run {run}: {kinds}")
        for run, r in runs.items():
            if r["status"] == "completed":
                self.assertEqual(seen.get(run), ["start", "end"], f"completed run {run} did not run through")

        # a run failed by a rescue (its lease had expired) did nothing after it:
        # its worker stops it (the fence) before its lease expires
        for e in effects:
            r = runs[e["run"]]
            if r["rescued_at"] is not None:
                self.assertLess(e["at"], r["rescued_at"], f"run {e['run']} (worker {r['worker_id']}) recorded "
                                                          f"its {e['kind']} after it was rescued\n{logs}")

        # no two runs of one job, nor of two jobs holding the same dedupe key
        # while both were pending, worked at the same time
        spans = {}
        for e in effects:
            s = spans.setdefault(e["run"], [e["at"], e["at"]])
            s[1] = e["at"]
        groups = {}
        for run, (first, last) in spans.items():
            job = runs[run]["job"]
            groups.setdefault(("job", job), []).append((first, last, run))
            if jobs[job]["dedupe_key"]:
                groups.setdefault(("key", jobs[job]["dedupe_key"]), []).append((first, last, run))
        for group, ss in groups.items():
            ss.sort()
            for (_, last, a), (first, _, b) in zip(ss, ss[1:]):
                self.assertLess(last, first, f"{group}: run {a} (worker {runs[a]['worker_id']}) worked until "
                                             f"{last}, after run {b} (worker {runs[b]['worker_id']}) began "
                                             f"at {first}\n{logs}")

        # dedupe: each key queued again only after its job was done, every
        # answer names a job with that key, and every job with a key was created
        # by exactly one answer
        created = [a for a in answers if a[2]]
        self.assertEqual(len(created), len({a[1] for a in created}))
        for key, job, _ in answers:
            self.assertEqual(jobs[job]["dedupe_key"], key)
        self.assertEqual(sorted(a[1] for a in created),
                         sorted(j for j, x in jobs.items() if x["dedupe_key"]))
        self.assertGreater(len(answers), len(created), "no enqueue ever met its key pending")

        # the faults happened: a rescue, a fence or a lost lease, and the restart
        self.assertIn("database connection failed", logs)
        self.assertTrue(any(r["error_message"] and r["error_message"].startswith("worker lost: lease expired")
                            for r in runs.values()), "the killed worker's runs were never rescued")


    def test_an_outage_is_logged_once_then_reminded_and_its_end_with_how_long(self):
        # a stopped server under a daemon was a line per connection per retry,
        # and one per failed periodic statement (rescue, lease renewal, claim),
        # some 190 lines a minute with a 6 s lease; and no line said it was back
        env = self.own_env
        d = self.serving("--lease", "30", "--poll", "1")
        # runs in flight across the outage (that end during it), and runs due during it
        pgfixture.psql(self.url, """
            INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at)
            SELECT 'sleep', '{"seconds": 4}', now() + make_interval(secs => g % 2 * 6)
            FROM generate_series(1, 8) g""")
        self.wait_for(lambda: self.q("SELECT 1 FROM sluice.scheduled_job_runs WHERE status = 'running'"), 30,
                      "no run started")
        self.sluice("db", "stop", env=env)
        d.wait_log("the database is still unreachable; retrying", timeout=60)  # a reminder
        self.sluice("db", "start", env=env)
        d.wait_log("database connection back", timeout=60)
        self.wait_for(lambda: not self.q("SELECT 1 FROM sluice.scheduled_jobs WHERE job_type = 'sleep' "
                                         "AND status <> 'completed'"), 120, "the jobs did not all complete")
        self.assertEqual(d.stop(), 0, d.log())
        log = d.log()
        outage = log[log.index("database connection failed"):log.index("database connection back")]
        self.assertEqual(log.count("database connection failed; retrying until it is back"), 1, log)
        self.assertIn('error="terminating connection due to administrator command"', log)  # the reason
        for line in ("the database says", "rescue pass failed", "lease renewal failed",
                     "looking for unscheduled recurring jobs failed", "claiming and recording runs failed"):
            self.assertNotIn(line, outage)
        # reminders no earlier than their times: 10 s, then doubling intervals
        downs = [int(x) for x in re.findall(r'still unreachable; retrying" down_for=(\d+)s', log)]
        self.assertTrue(downs, log)
        for k, down in enumerate(downs):
            self.assertGreaterEqual(down, 10 * (2 ** (k + 1) - 1) - 1, log)
        back = re.findall(r'msg="database connection back" down_for=([0-9.]+)s', log)
        self.assertEqual(len(back), 1, log)
        self.assertGreaterEqual(float(back[0]), downs[-1], log)
        # nothing lost, nothing run twice: each job ran once (the runs that
        # ended during the outage were recorded once the server was back)
        runs = self.q("SELECT scheduled_job_id AS job, status FROM sluice.scheduled_job_runs "
                      "WHERE job_type = 'sleep'")
        self.assertEqual(sorted(r["status"] for r in runs), ["completed"] * 8, runs)
        self.assertEqual(len({r["job"] for r in runs}), 8, runs)

    def test_runs_that_end_in_an_outage_longer_than_their_lease_keep_their_outcomes(self):
        # the daemon's own rescue pass, first to reach the database once it was
        # back, failed the runs whose completed outcomes the daemon was holding
        # to record ("worker lost: lease expired"), and their jobs ran again
        env = self.own_env
        d = self.serving("--lease", "10", "--poll", "1")
        self.start_sleep_runs(4, 4)
        # the runs end some 4 s from now, while the server is down; their
        # leases (renewed every 3.3 s, the fence at 9 s) expire within 10 s
        self.sluice("db", "stop", env=env)
        time.sleep(12)
        self.sluice("db", "start", env=env)
        d.wait_log("database connection back", timeout=60)
        self.wait_sleep_jobs_completed()
        self.assertEqual(d.stop(), 0, d.log())
        runs = self.q("SELECT scheduled_job_id AS job, status, error_message FROM sluice.scheduled_job_runs "
                      "WHERE job_type = 'sleep'")
        self.assertEqual([r["status"] for r in runs], ["completed"] * 4, runs)
        self.assertEqual(len({r["job"] for r in runs}), 4, runs)
        self.assertNotIn("worker was lost", d.log())
        self.assertNotIn("run outcome not recorded", d.log())

    def test_a_database_turned_read_only_is_retried_with_backoff_and_left_behind(self):
        # each failed cycle (its claim refused: "cannot execute SELECT FOR
        # UPDATE in a read-only transaction") was followed by a sweep for runs
        # it may have claimed; the sweep, a read, succeeded and reset the
        # backoff, so the daemon retried and logged five times a second
        env = self.own_env
        d = self.serving("--poll", "1")
        pgfixture.psql(self.url, "ALTER DATABASE sluice SET default_transaction_read_only = on")
        self.end_daemon_sessions()
        d.wait_log("read-only transaction")
        first = d.logged_at("read-only transaction")
        time.sleep(5)
        # retried after 0.2 s doubled at each failure (up to five retries in
        # 5 s), logged once: the first reminder is due 10 s after the first line
        self.assertEqual(d.log().count("claiming and recording runs failed"), 1, d.log())
        self.assertGreaterEqual(time.time() - first, 5)
        pgfixture.psql(self.url, "BEGIN READ WRITE; ALTER DATABASE sluice RESET default_transaction_read_only; "
                                 "COMMIT")
        self.end_daemon_sessions()
        job = self.sluice("queue", "noop", env=env).stdout.strip()
        self.wait_for(lambda: self.q(f"SELECT 1 FROM sluice.scheduled_jobs WHERE id = '{job}' "
                                     "AND status = 'completed'"), 60, "the daemon did not carry on")
        d.wait_log("claiming and recording runs works again")
        self.assertRegex(d.log(), r'"claiming and recording runs works again" failures=\d+ failed_for=')
        self.assertEqual(d.stop(), 0, d.log())

    def test_periodic_statements_refused_are_logged_first_then_reminded(self):
        # each lease renewal and rescue pass refused was a warn line: every
        # 20 s each with the default lease, for as long as the database stayed
        # read-only. Now the first, reminders at growing intervals, and a line
        # when it works again
        d = self.serving("--lease", "3", "--poll", "1")  # both every second
        pgfixture.psql(self.url, "ALTER DATABASE sluice SET default_transaction_read_only = on")
        self.end_daemon_sessions()
        # refused once a second until each has been reminded of, 10 s on
        tasks = ("lease renewal", "rescue pass", "settling which job types are served")
        for task in tasks:
            self.wait_for(lambda: re.search(rf'msg="{task} failed" error="[^"]*read-only[^"]*" failures=',
                                            d.log()), 60, f"no reminder of the {task}'s refusals")
        pgfixture.psql(self.url, "BEGIN READ WRITE; ALTER DATABASE sluice RESET default_transaction_read_only; "
                                 "COMMIT")
        self.end_daemon_sessions()
        for task in tasks:
            d.wait_log(f"{task} works again")
        self.assertEqual(d.stop(), 0, d.log())
        log = d.log()
        for task in tasks:
            said = re.findall(rf'msg="{task} failed" error="[^"]*read-only[^"]*"(.*)', log)
            # the first, then a reminder 10 s after it (the next is due 20 s
            # later, which a slow machine may reach)
            self.assertIn(len(said), (2, 3), log)
            self.assertEqual(said[0], "", log)
            failures, failing = re.fullmatch(r" failures=(\d+) failing_for=(\d+)s", said[1]).groups()
            self.assertGreaterEqual(int(failing), 10)
            self.assertGreaterEqual(int(failures), 5)
            again = re.search(rf'msg="{task} works again" failures=(\d+) failed_for=\d+\.\ds', log)
            self.assertIsNotNone(again, log)
            self.assertGreaterEqual(int(again.group(1)), int(failures))

    def test_runs_that_end_while_the_database_is_read_only_keep_their_outcomes(self):
        # the outcomes' batch was refused ("cannot execute … in a read-only
        # transaction"), taken for one outcome the database would never take,
        # and recorded one by one, then as bare failures, then dropped: the
        # runs were failed as "worker lost" once their leases ran out, and the
        # jobs that had completed ran again. (So with privileges revoked: below.)
        d = self.serving("--lease", "20", "--poll", "1")
        self.start_sleep_runs(3, 2)
        pgfixture.psql(self.url, "ALTER DATABASE sluice SET default_transaction_read_only = on")
        self.end_daemon_sessions()
        d.wait_log("read-only transaction")
        # the runs end meanwhile, and the cycles retried with backoff (0.2, 0.4,
        # … 3.2 s) try to record their outcomes
        time.sleep(8)
        pgfixture.psql(self.url, "BEGIN READ WRITE; ALTER DATABASE sluice RESET default_transaction_read_only; "
                                 "COMMIT")
        self.end_daemon_sessions()
        self.wait_sleep_jobs_completed()
        self.assertEqual(d.stop(), 0, d.log())
        runs = self.q("SELECT status, error_message FROM sluice.scheduled_job_runs WHERE job_type = 'sleep'")
        self.assertEqual(runs, [{"status": "completed", "error_message": None}] * 3, d.log())
        self.assertNotIn("dropped here", d.log())

    def test_runs_that_end_while_the_role_lacks_its_privileges_keep_their_outcomes(self):
        # the outcomes wait whole, as for a read-only database; and so does the
        # sweep that follows each refused claim ("permission denied" was taken
        # for the sweep's own fault: it gave up, and whatever a lost reply had
        # claimed was left to its leases)
        role = "sluice_app"
        d = self.serving("--lease", "30", "--poll", "1", role=role)
        self.start_sleep_runs(3, 2)
        pgfixture.psql(self.url, f"REVOKE ALL ON ALL TABLES IN SCHEMA sluice FROM {role}")
        d.wait_log("permission denied")
        # the runs end meanwhile; the cycles retried with backoff (0.2, 0.4, …
        # 3.2 s) try to record their outcomes, well within a lease
        time.sleep(8)
        pgfixture.psql(self.url, f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sluice TO {role}")
        self.wait_sleep_jobs_completed()
        self.assertEqual(d.stop(), 0, d.log())
        runs = self.q("SELECT status, error_message FROM sluice.scheduled_job_runs WHERE job_type = 'sleep'")
        self.assertEqual(runs, [{"status": "completed", "error_message": None}] * 3, d.log())
        self.assertNotIn("one by one", d.log())
        self.assertNotIn("could not look for runs claimed by a cycle whose reply was lost", d.log())

    def test_an_outcome_a_row_level_security_policy_refuses_holds_up_the_worker_a_lease_at_most(self):
        # a policy refusing one run's outcome answers as a privilege missing
        # does (42501), which refuses every outcome alike and is waited out:
        # held whole for that, the batch was refused for ever, and the worker
        # recorded and claimed nothing more. After a lease the refusal is
        # taken for the outcome's: the rest is recorded, and that one as a
        # bare failure
        role = "sluice_app"
        d = self.serving("--lease", "6", "--poll", "1", role=role)
        pgfixture.psql(self.url, f"""
            ALTER TABLE sluice.scheduled_job_runs ENABLE ROW LEVEL SECURITY;
            CREATE POLICY no_poison ON sluice.scheduled_job_runs TO {role}
                USING (true) WITH CHECK (coalesce(result ->> 'message', '') <> 'poison')""")
        env = self.own_env
        poison = self.sluice("queue", "echo", "--params", '{"message": "poison"}', "--max-retries", "0",
                             env=env).stdout.strip()
        d.wait_log("row-level security")
        later = self.sluice("queue", "noop", env=env).stdout.strip()
        self.wait_for(lambda: self.q(f"SELECT 1 FROM sluice.scheduled_jobs WHERE id = '{later}' "
                                     "AND status = 'completed'"), 60, "the worker did not carry on")
        self.wait_for(lambda: self.q(f"SELECT 1 FROM sluice.scheduled_jobs WHERE id = '{poison}' "
                                     "AND status = 'failed'"), 60, "the refused outcome was not recorded")
        self.assertEqual(d.stop(), 0, d.log())
        run = self.q(f"SELECT status, result, error_message FROM sluice.scheduled_job_runs "
                     f"WHERE scheduled_job_id = '{poison}'")
        self.assertEqual(len(run), 1, run)
        self.assertIsNone(run[0]["result"])
        self.assertIn("the run's outcome could not be recorded: new row violates row-level security policy",
                      run[0]["error_message"])


    def test_a_stop_while_a_table_lock_holds_up_the_daemon_cancels_its_statements_and_leaves_in_time(self):
        # an operator's LOCK TABLE held up the daemon's statements: SIGTERM then
        # waited the grace period and a whole lease (90 s with the defaults,
        # past the unit's TimeoutStopSec=60), saying only that it waited for
        # runs in flight, and left its statements waiting in the server: once
        # the lock went, its claim committed for a worker that was gone, and
        # the job failed "worker lost" without having run
        env = self.own_env
        d = self.serving("--poll", "1", "--grace", "2")  # the default lease, 60 s
        self.sluice("queue", "sleep", "--params", '{"seconds": 600}', env=env)
        self.wait_for(lambda: self.q("SELECT 1 FROM sluice.scheduled_job_runs WHERE status = 'running'"), 30,
                      "the run did not start")
        holder = subprocess.Popen(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  env=pgfixture.clean_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        try:
            holder.stdin.write("BEGIN; LOCK TABLE sluice.scheduled_job_runs IN ACCESS EXCLUSIVE MODE;\n")
            holder.stdin.flush()
            self.wait_for(lambda: self.q("SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' "
                                         "AND query LIKE 'LOCK TABLE%'"), 30, "the lock was not taken")
            job = self.sluice("queue", "noop", "--max-retries", "0", env=env).stdout.strip()
            # a claim that would take it waits for the lock
            self.wait_for(lambda: self.q(f"SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         f"AND query LIKE '%finish_and_claim_runs%' AND xact_start >= "
                                         f"(SELECT next_run_at FROM sluice.scheduled_jobs WHERE id = '{job}')"),
                          30, "no claim waited for the lock")
            d.signal(signal.SIGTERM)
            # within its bound: the grace period, 10 s for the database, 5 s
            # for the answers to the statements cancelled (17 s here)
            self.assertEqual(d.wait(timeout=45), 1, d.log())
            log = d.log()
            self.assertRegex(log, r'msg="stopping: waiting for the database to answer a statement" '
                                  r'blocked_for=\d+s unrecorded=\d+ cancel_in=\d+s')
            self.assertIn('msg="stopping: the database did not answer in time; cancelling the statements in '
                          'flight"', log)
            # what it leaves behind: the run it cancelled at the end of the grace period
            self.assertRegex(log, r'msg="run failed" run=\S+ type=sleep seconds=\S+ error=shutdown '
                                  r'then="not recorded: the database did not answer')
            self.assertRegex(log, r'msg="the database did not answer: stopping without recording every '
                                  r'outcome; the leases hand the runs to other workers" unrecorded=1 '
                                  r'runs=\{[0-9a-f-]{36}\}\n')
            # none of its statements is left in the server to do its work later
            self.wait_for(lambda: not self.q("SELECT 1 FROM pg_stat_activity WHERE application_name = 'sluice'"),
                          30, "the daemon's statements are still in the server")
            holder.stdin.write("COMMIT;\n")
            holder.stdin.close()
            self.assertEqual(holder.wait(30), 0)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
            holder.stdin.close()
        # the claim was cancelled: the job was not taken, and runs once elsewhere
        self.assertEqual(self.q(f"SELECT status, attempts, current_run_id FROM sluice.scheduled_jobs "
                                f"WHERE id = '{job}'"), [{"status": "active", "attempts": 0, "current_run_id": None}])
        d2 = self.serve(env=env)
        self.wait_for(lambda: self.q(f"SELECT 1 FROM sluice.scheduled_jobs WHERE id = '{job}' "
                                     "AND status = 'completed'"), 60, "the job did not run")
        self.assertEqual(self.q(f"SELECT status FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'"),
                         [{"status": "completed"}])
        self.assertEqual(d2.stop(), 0, d2.log())


if __name__ == "__main__":
    harness.main()
