"""Shared test machinery: a fresh database per test case, the real sluice binary,
daemons in the background, SQL as JSON, and bounded waiting for conditions.

    class T(harness.SluiceTest):
        def test_x(self):
            job = self.sluice("queue", "echo").stdout.strip()
            with self.serve("--concurrency", "5") as d:
                self.wait_for(lambda: self.one("select status from sluice.scheduled_jobs")["status"] == "completed")

Python 3 standard library only. Every wait is bounded; a daemon left running at
the end of a test is killed and its log attached to the failure.
"""

import contextlib
import datetime
import json
import os
import re
import shutil
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgfixture  # noqa: E402

SOURCE = os.environ.get("SLUICE_SOURCE_DIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLES = os.path.join(SOURCE, "examples", "handlers")
TEST_HANDLERS = os.path.join(SOURCE, "tests", "integration", "handlers")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")
COMMAND_TIMEOUT = 120


class Daemon:
    """A `sluice serve` in the background, its output in a log file."""

    def __init__(self, test, args, env):
        self.test = test
        self.logf = tempfile.NamedTemporaryFile("w+", prefix="sluice-serve-", suffix=".log",
                                                delete=False)
        self.proc = subprocess.Popen([pgfixture.sluice_bin(), "serve", *args], env=env,
                                     stdout=self.logf, stderr=subprocess.STDOUT, text=True)

    def log(self):
        with open(self.logf.name) as f:
            return f.read()

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"sluice serve did not exit within {timeout}s:\n{self.log()}")

    def stop(self, timeout=60):
        """SIGTERM, then wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_log(self, text, timeout=30):
        self.test.wait_for(lambda: text in self.log(), timeout,
                           f"daemon log never showed {text!r}")

    def worker_id(self, timeout=60):
        """The id it registered as a worker (from its "sluice serving" line)."""
        line = self.test.wait_for(
            lambda: next((x for x in self.log().splitlines() if 'msg="sluice serving"' in x), None),
            timeout, "the daemon never started serving")
        return line.split(" worker=")[1].split()[0]

    def logged_at(self, text):
        """When the daemon logged its first line containing text, by its own
        clock (the line's ts, in seconds since the epoch; logfmt or JSON)."""
        for line in self.log().splitlines():
            m = re.search(r'(?:^ts=|"ts":\s*")(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z', line)
            if text in line and m:
                at = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
                return at.timestamp()
        raise AssertionError(f"the daemon never logged {text!r}:\n{self.log()}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.proc.poll() is None:
            status = self.stop()
            if exc_type is None:
                self.test.assertEqual(status, 0, f"serve exited {status}:\n{self.log()}")
        return False

    def close(self):
        if not self.logf.closed:
            self.logf.close()
            os.unlink(self.logf.name)


class ClusterProxy:
    """A TCP proxy in front of the test cluster (on its Unix socket): url is what
    a client connects to. Each connection is pumped by _pump(client, server),
    which a subclass writes; close() stops accepting."""

    def __init__(self, db_url):
        parts = urllib.parse.urlsplit(db_url)
        query = urllib.parse.parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "/tmp"])[0]
        port = parts.port or int(query.get("port", ["5432"])[0])
        if not host.startswith("/"):
            raise ValueError(f"the test cluster is expected on a Unix socket, not {host}")
        self.target = os.path.join(host, f".s.PGSQL.{port}")
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        user = parts.username or "postgres"
        self.url = (f"postgresql://{user}@127.0.0.1:{self.listener.getsockname()[1]}"
                    f"{parts.path}?sslmode=disable")
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client, server):
        raise NotImplementedError

    def close(self):
        self.closing = True
        self.listener.close()


class ReplyCutter(ClusterProxy):
    """A proxy (ClusterProxy) that loses one reply: the first time a
    transaction's answer holds `marker`, it lets the server finish that
    transaction (its ReadyForQuery comes, so what it did is committed), then
    closes both ends without passing on any of that answer, as a network that
    broke at that moment would. Every other byte goes through as it is. cut is
    set once it happened."""

    READY = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, idle: the transaction is over

    def __init__(self, db_url, marker):
        self.marker = marker
        self.cut = threading.Event()
        self.lock = threading.Lock()
        super().__init__(db_url)

    def _pump(self, client, server):
        held = b""  # from the server, not passed on yet (it may hold the marker)
        found = -1  # where the marker is in held
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1.0)
                if self.closing:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        server.sendall(data)
                        continue
                    with self.lock:
                        armed = not self.cut.is_set()
                    if not armed:
                        client.sendall(held + data)
                        held = b""
                        continue
                    held += data
                    if found < 0:
                        found = held.find(self.marker)
                    if found < 0:  # held back: only what may begin the marker
                        keep = next((n for n in range(min(len(held), len(self.marker) - 1), 0, -1)
                                     if self.marker.startswith(held[-n:])), 0)
                        client.sendall(held[:len(held) - keep])
                        held = held[len(held) - keep:]
                    elif self.READY in held[found:]:
                        with self.lock:
                            self.cut.set()
                        return  # the commit is done; the answer never arrives
        except OSError:
            return
        finally:
            client.close()
            server.close()


class SluiceTest(unittest.TestCase):
    """Each test case class gets its own database; each test a clean schema."""

    handlers = [EXAMPLES, TEST_HANDLERS]

    @classmethod
    def setUpClass(cls):
        cls.db = pgfixture.fresh_database(cls.__name__)

    @classmethod
    def tearDownClass(cls):
        pgfixture.drop_database(cls.db)

    def setUp(self):
        # a clean slate: drop sluice's schema; the next command migrates again
        pgfixture.psql(self.db, "DROP SCHEMA IF EXISTS sluice CASCADE")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            if d.proc.poll() is None:
                d.kill()
                if self._failed():
                    sys.stderr.write(d.log())
            d.close()

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        return bool(result and (result.failures or result.errors))

    # -------------------------------------------------------------- environment

    def env(self, extra=None, db=True):
        env = pgfixture.clean_env()
        env["SLUICE_HOME"] = pgfixture.test_home()
        if db:
            env["DATABASE_URL"] = self.db
        env["SLUICE_HANDLERS"] = ":".join(self.handlers)
        env["SLUICE_LOG_LEVEL"] = env.get("SLUICE_LOG_LEVEL", "info")
        if extra:
            env.update(extra)
        return env

    # -------------------------------------------------------------- commands

    def sluice(self, *args, env=None, check=True, input=None, timeout=COMMAND_TIMEOUT):
        proc = subprocess.run([pgfixture.sluice_bin(), *args], env=env or self.env(),
                              capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def while_running(self, args, act, env=None, hangup=signal.SIG_DFL, ignore=(), timeout=30):
        """Starts `sluice ARGS` (SIGHUP set to `hangup`: the default, not what
        the test runner has; each signal in `ignore` ignored, as nohup or a
        shell's background job leaves it), calls act(proc) while it runs, then
        waits up to `timeout` s for it to end, and kills it if it has not.
        Returns (exit status, stdout, stderr)."""
        def start():
            signal.signal(signal.SIGHUP, hangup)
            for sig in ignore:
                signal.signal(sig, signal.SIG_IGN)
        proc = subprocess.Popen([pgfixture.sluice_bin(), *args], env=env or self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=start)
        try:
            act(proc)
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, out, err

    def read_line(self, proc, timeout=60, stream=None):
        """The next line a process started by while_running writes on stdout
        (or on `stream`, proc.stderr). Read a byte at a time from the pipe:
        the file object's readline() may take the lines after it into its
        buffer, where neither select() nor communicate() sees them."""
        fd = (stream or proc.stdout).fileno()
        line, deadline = b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            self.assertTrue(ready, f"no whole line written in {timeout} s (so far {line!r})")
            byte = os.read(fd, 1)
            if not byte:
                break
            line += byte
        return line.decode()

    def serve(self, *args, env=None):
        d = Daemon(self, args, env or self.env())
        self.daemons.append(d)
        return d

    # -------------------------------------------------------------- SQL

    def sql(self, sql):
        """Rows of a query as a list of dicts."""
        out = pgfixture.psql(self.db, f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t")
        return json.loads(out)

    def one(self, sql):
        rows = self.sql(sql)
        self.assertEqual(len(rows), 1, f"expected one row from {sql!r}, got {rows}")
        return rows[0]

    def scalar(self, sql):
        return pgfixture.psql(self.db, sql)

    def refuse_results(self, key, value, message):
        """Has the database refuse a run's outcome whose result has key = value
        (as text), as a deployment's trigger might: every update recording it
        raises `message`. The schema must exist."""
        self.scalar(f"""CREATE FUNCTION public.refuse_result() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.result ->> '{key}' = '{value}' THEN RAISE EXCEPTION '{message}'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_result BEFORE UPDATE ON sluice.scheduled_job_runs
                FOR EACH ROW EXECUTE FUNCTION public.refuse_result()""")

    def trace_effects(self):
        """An empty public.trace_effects, where the trace handler records what
        its runs did (the table outlives the sluice schema between tests)."""
        self.scalar("DROP TABLE IF EXISTS public.trace_effects; "
                    "CREATE TABLE public.trace_effects (job_id uuid, run_id uuid, attempt int, "
                    "kind text, at timestamptz DEFAULT clock_timestamp())")

    def slow_claims(self, job_type, seconds):
        """Makes every claim of a `job_type` run take `seconds` longer, as a slow
        database would: a trigger on the insert of the run. The schema must exist."""
        self.scalar(f"""CREATE OR REPLACE FUNCTION public.slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.job_type = '{job_type}' THEN PERFORM pg_sleep({seconds}); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER slow_claim BEFORE INSERT ON sluice.scheduled_job_runs
                FOR EACH ROW EXECUTE FUNCTION public.slow_claim()""")

    def assert_given_back(self, job_type):
        """The one job of `job_type` got its run back unstarted: no run left,
        no attempt spent, due again, and no trace of the handler's effects."""
        self.assertEqual(self.count("sluice.scheduled_job_runs", f"job_type = '{job_type}'"), 0)
        self.assertEqual(self.one(f"SELECT status, attempts, current_run_id, next_run_at <= now() AS due "
                                  f"FROM sluice.scheduled_jobs WHERE job_type = '{job_type}'"),
                         {"status": "active", "attempts": 0, "current_run_id": None, "due": True})

    def crash_postgres(self, home, env):
        """Stops the embedded cluster under `home` as a crash would (an immediate
        shutdown: no checkpoint, what was not flushed to the WAL is lost), then
        starts it again (recovery from the WAL)."""
        pidfile = os.path.join(home, "pg", "data", "postmaster.pid")
        with open(pidfile) as f:
            os.kill(int(f.readline()), signal.SIGQUIT)
        self.wait_for(lambda: not os.path.exists(pidfile), 30, "Postgres did not stop")
        self.sluice("db", "start", env=env)

    @contextlib.contextmanager
    def advisory_lock(self, key):
        """Holds Postgres advisory lock `key` in a session of its own until the
        block ends: a handler's query that takes the lock (shared, say) waits
        for the test to let it go on."""
        holder = subprocess.Popen(["psql", self.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  env=pgfixture.clean_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        try:
            holder.stdin.write(f"SELECT pg_advisory_lock({int(key)});\n")
            holder.stdin.flush()
            self.wait_for(lambda: self.lock_waiters(key, granted=True) == 1, 30,
                          f"advisory lock {key} was not taken")
            yield
        finally:
            holder.stdin.close()  # psql exits: the lock is released
            holder.wait(30)

    def lock_waiters(self, key, granted=False):
        """How many sessions wait for (or, granted, hold) advisory lock `key`."""
        return int(self.scalar(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {int(key)} "
                               f"AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                               f"AND {'' if granted else 'NOT '}granted"))

    def sql_error(self, sql):
        """Runs sql, which must fail, with verbose errors; returns psql's stderr,
        whose error line reads "ERROR:  SQLSTATE: message"."""
        proc = subprocess.run(["psql", self.db, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                               "-Atc", sql], capture_output=True, text=True, env=pgfixture.clean_env())
        self.assertNotEqual(proc.returncode, 0, f"{sql} was accepted: {proc.stdout}")
        return proc.stderr

    def count(self, table, where="true"):
        return int(self.scalar(f"SELECT count(*) FROM {table} WHERE {where}"))

    # -------------------------------------------------------------- waiting

    def wait_for(self, cond, timeout=30, message="condition never became true"):
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} (waited {timeout}s)")
            time.sleep(0.05)

    def wait_listening(self, timeout=30):
        """Waits until a daemon on this database LISTENs for new jobs."""
        self.wait_for(lambda: self.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle' AND query LIKE 'LISTEN %'") != "0", timeout, "no daemon is listening")

    def wait_jobs_done(self, n=None, timeout=60):
        """Waits until no job is active; optionally that n jobs exist."""
        def done():
            rows = self.sql("SELECT status FROM sluice.scheduled_jobs")
            if n is not None and len(rows) < n:
                return False
            return all(r["status"] != "active" for r in rows)
        self.wait_for(done, timeout, "jobs did not all finish")


class HttpFixtureTest(SluiceTest):
    """A SluiceTest with the HTTP fixture server (tests/fixtures/http_fixture.py)
    for the whole class, as self.fx, and an environment without proxy
    variables, so that requests to it go straight over loopback."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if FIXTURES not in sys.path:
            sys.path.insert(0, FIXTURES)
        from fixture_client import Fixture
        cls.fx = Fixture("http_fixture.py")

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()
        super().tearDownClass()

    def env(self, extra=None, db=True):
        return {k: v for k, v in super().env(extra, db).items() if "proxy" not in k.lower()}


class OwnClusterTest(SluiceTest):
    """A test with an embedded cluster of its own under self.home (own_env
    reaches it), which it may stop, crash and start again; the cluster is
    stopped and its directory removed at the end."""

    home_prefix = "sluice-own-"

    def setUp(self):
        super().setUp()
        self.home = tempfile.mkdtemp(prefix=self.home_prefix, dir="/tmp")
        os.chmod(self.home, 0o755)
        self.own_env = self.env({"SLUICE_HOME": self.home})
        self.own_env.pop("DATABASE_URL")

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            subprocess.run([pgfixture.sluice_bin(), "db", "stop"], env=self.own_env, capture_output=True,
                           timeout=60)
            shutil.rmtree(self.home, ignore_errors=True)


def main():
    unittest.main(verbosity=2)
