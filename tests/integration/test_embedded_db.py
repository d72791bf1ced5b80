#!/usr/bin/env python3
"""The embedded cluster (`sluice db …`) and the migration runner (`sluice migrate`),
driven through the real binary.

Uses homes of its own under /tmp, not the shared test cluster: they start from
nothing (initdb), get killed and stopped. Every cluster started here is stopped and
every directory removed at the end. Needs SLUICE_BIN; SLUICE_SOURCE_DIR (for the
number of schema files) is optional.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgfixture  # noqa: E402

TIMEOUT = 120
IS_ROOT = os.geteuid() == 0


def run(home, *args, env=None):
    """`sluice --home HOME args…` → CompletedProcess (never raises on exit status)."""
    return pgfixture.sluice(*args, home=home, env=env, check=False)


def psql(url, sql):
    proc = subprocess.run(["psql", url, "-X", "-Atc", sql], env=pgfixture.clean_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    return proc


def postmaster_pid(home):
    with open(os.path.join(home, "pg", "data", "postmaster.pid")) as f:
        return int(f.readline())


def path_without_server():
    """PATH minus every directory that has initdb or pg_ctl."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, p)) for p in ("initdb", "pg_ctl"))]
    return os.pathsep.join(dirs)


class EmbeddedDb(unittest.TestCase):
    """One home, taken through its life in order (tests are numbered)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-edb-")
        os.chmod(cls.tmp, 0o711)  # as root, the postgres user must get through
        cls.home = os.path.join(cls.tmp, "home")
        cls.homes = [cls.home]

    @classmethod
    def tearDownClass(cls):
        for home in cls.homes:
            if os.path.isdir(os.path.join(home, "pg", "data")):
                run(home, "db", "stop")
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def new_home(self, name):
        home = os.path.join(self.tmp, name)
        self.homes.append(home)
        return home

    def url(self, home=None):
        proc = run(home or self.home, "db", "url")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.strip()

    def assert_connects(self, url):
        proc = psql(url, "select 1")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "1")

    # ------------------------------------------------------------ lifecycle

    def test_01_status_before_init_says_stopped(self):
        proc = run(self.home, "db", "status")
        self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)
        self.assertIn("stopped", proc.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.home, "pg", "data")))

    def test_02_url_initialises_starts_and_psql_accepts_it(self):
        url = self.url()
        self.assertRegex(url, r"^postgresql://postgres@/sluice\?host=/")
        self.assertNotIn("\n", url)
        self.assert_connects(url)
        proc = psql(url, "show listen_addresses")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "", "the cluster must not listen on TCP")
        self.assertEqual(psql(url, "select current_database()").stdout.strip(), "sluice")
        self.assertEqual(psql(url, "show fsync").stdout.strip(), "on")
        log = os.path.join(self.home, "pg", "server.log")
        self.assertTrue(os.path.isfile(log), "server log at <home>/pg/server.log")

    def test_03_second_start_is_a_noop(self):
        pid = postmaster_pid(self.home)
        proc = run(self.home, "db", "start")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("already running", proc.stdout)
        self.assertNotIn("initialised", proc.stdout)
        self.assertEqual(postmaster_pid(self.home), pid)

    def test_04_status_running(self):
        proc = run(self.home, "db", "status")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("running", proc.stdout)
        self.assertIn(os.path.join(self.home, "pg", "data"), proc.stdout)
        self.assertIn(self.url(), proc.stdout)
        self.assertRegex(proc.stdout, r"version:\s+\d+")

    def test_05_ownership_and_modes(self):
        data = os.stat(os.path.join(self.home, "pg", "data"))
        run_dir = os.stat(os.path.join(self.home, "pg", "run"))
        self.assertEqual(stat.S_IMODE(data.st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(run_dir.st_mode), 0o700)
        if IS_ROOT:
            import pwd
            pg_uid = pwd.getpwnam("postgres").pw_uid
            self.assertEqual(data.st_uid, pg_uid, "as root the data dir belongs to postgres")
            self.assertEqual(run_dir.st_uid, pg_uid)
        else:
            self.assertEqual(data.st_uid, os.geteuid())

    def test_06_kill_9_then_start_recovers(self):
        url = self.url()
        pid = postmaster_pid(self.home)
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline and psql(url, "select 1").returncode == 0:
            time.sleep(0.1)
        proc = run(self.home, "db", "start")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("started", proc.stdout)
        self.assertNotEqual(postmaster_pid(self.home), pid)
        self.assert_connects(url)

    # ------------------------------------------------------------ migrations

    def test_07_migrate_applies_then_is_up_to_date(self):
        proc = run(self.home, "migrate")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"(\d+ migrations? applied|schema is up to date)")
        proc = run(self.home, "migrate")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("schema is up to date", proc.stdout)
        self.assertNotIn("applied ", proc.stderr)
        rows = psql(self.url(), "select name from sluice.schema_migrations order by name")
        self.assertEqual(rows.returncode, 0, rows.stderr)
        names = rows.stdout.split()
        source = os.environ.get("SLUICE_SOURCE_DIR")
        if source and os.path.isdir(os.path.join(source, "schema")):
            expected = sorted(f for f in os.listdir(os.path.join(source, "schema"))
                              if f.endswith(".sql"))
            self.assertEqual(names, expected)
            # the checksums recorded from the build's md5 of each embedded file are
            # those the server computes from the same files read from a directory
            proc = run(self.home, "migrate", "--status",
                       env={"SLUICE_SCHEMA_DIR": os.path.join(source, "schema")})
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("schema is up to date", proc.stdout)
            self.assertNotIn("changed", proc.stdout + proc.stderr)
        proc = run(self.home, "migrate", "--status")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("schema is up to date", proc.stdout)

    def test_08_migrations_from_a_directory(self):
        url = self.fresh_database("mig")
        schema = os.path.join(self.tmp, "schema")
        os.mkdir(schema)
        env = {"SLUICE_SCHEMA_DIR": schema}

        def write(name, text):
            with open(os.path.join(schema, name), "w") as f:
                f.write(text)

        def migrate(*args):
            return pgfixture.sluice("--db", url, "migrate", *args, home=self.home, env=env,
                                    check=False)

        write("001_first.sql", "CREATE TABLE first_t (id int);\n"
                               "DROP TABLE IF EXISTS not_there;\n")
        write("002_second.sql", "CREATE TABLE second_t (id int);\n")
        proc = migrate()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("2 migrations applied", proc.stdout)
        self.assertIn("applied 001_first.sql", proc.stderr)
        self.assertNotIn("NOTICE", proc.stderr)
        # Unqualified names land in schema sluice.
        self.assertEqual(psql(url, "select to_regclass('sluice.first_t') is not null")
                         .stdout.strip(), "t")

        proc = migrate()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("schema is up to date", proc.stdout)
        self.assertEqual(psql(url, "select string_agg(version || ':' || name, ',' order by "
                                   "version) from sluice.schema_migrations").stdout.strip(),
                         "001:001_first.sql,002:002_second.sql")

        # A file edited after it was applied: a warning naming it, not an error.
        write("001_first.sql", "-- edited\nCREATE TABLE first_t (id int);\n")
        proc = migrate()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("001_first.sql", proc.stderr)
        self.assertIn("changed", proc.stderr)

        # A failing file: named, with its line; nothing of it stays; later files wait.
        write("003_broken.sql", "CREATE TABLE broken_t (id int);\n"
                                "INSERT INTO broken_t VALUES (1);\n"
                                "SELEC 1;\n")
        write("004_after.sql", "CREATE TABLE after_t (id int);\n")
        proc = migrate()
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("003_broken.sql", proc.stderr)
        self.assertIn("line 3", proc.stderr)
        self.assertIn("SELEC", proc.stderr)
        self.assertEqual(psql(url, "select to_regclass('sluice.broken_t') is null and "
                                   "to_regclass('sluice.after_t') is null").stdout.strip(), "t")
        self.assertEqual(psql(url, "select count(*) from sluice.schema_migrations "
                                   "where version in ('003', '004')").stdout.strip(), "0")
        proc = migrate("--status")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"pending\s+003_broken\.sql")
        self.assertRegex(proc.stdout, r"applied\s+\S+ \S+\s+001_first\.sql\s+\(file changed")

        # Fixed: both pending files go in, in order.
        write("003_broken.sql", "CREATE TABLE broken_t (id int);\n")
        proc = migrate()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("2 migrations applied", proc.stdout)
        self.assertLess(proc.stderr.index("applied 003_broken.sql"),
                        proc.stderr.index("applied 004_after.sql"))

        # Transaction control inside a file is refused.
        write("005_commits.sql", "CREATE TABLE c_t (id int);\nCOMMIT;\n")
        proc = migrate()
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("005_commits.sql", proc.stderr)

    def test_09_concurrent_migrate_applies_once(self):
        url = self.fresh_database("conc")
        procs = [subprocess.Popen([pgfixture.sluice_bin(), "--home", self.home, "--db", url,
                                   "migrate"], env=pgfixture.clean_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, out + err)
        applied = sum(err.count("applied ") for _, err in outs)
        recorded = int(psql(url, "select count(*) from sluice.schema_migrations").stdout)
        source = os.environ.get("SLUICE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
        self.assertEqual(recorded, len([f for f in os.listdir(os.path.join(source, "schema"))
                                        if f.endswith(".sql")]))
        self.assertEqual(applied, recorded)

    def fresh_database(self, name):
        base = self.url()
        self.assertEqual(psql(base, f"create database {name}").returncode, 0)
        return pgfixture.with_database(base, name)

    # ------------------------------------------------------------ refusals, stop

    def test_10_db_url_given_means_embedded_not_in_use(self):
        given = "postgresql://someone@/elsewhere?host=/nonexistent"
        for sub in ("start", "stop"):
            proc = run(self.home, "--db", given, "db", sub)
            self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
            self.assertIn("not in use", proc.stderr)
        proc = run(self.home, "--db", given, "db", "url")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), given)
        # The same through the environment.
        proc = run(self.home, "db", "start", env={"DATABASE_URL": given})
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)

    def test_11_missing_server_binaries(self):
        home = self.new_home("nobin")
        env = {"SLUICE_PG_BIN": "/nonexistent", "PATH": path_without_server()}
        proc = run(home, "db", "start", env=env)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("apt-get install postgresql", proc.stderr)
        self.assertIn("initdb", proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)

    def test_12_stop_then_status_says_stopped(self):
        proc = run(self.home, "db", "stop")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("stopped", proc.stdout)
        proc = run(self.home, "db", "status")
        self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)
        self.assertIn("stopped", proc.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.home, "pg", "data",
                                                     "postmaster.pid")))
        proc = run(self.home, "db", "stop")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("not running", proc.stdout)

    # ------------------------------------------------------------ other homes

    def test_20_concurrent_first_starts_initdb_once(self):
        home = self.new_home("concurrent")
        results = [None, None]

        def start(i):
            results[i] = run(home, "db", "start")

        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        for r in results:
            self.assertIsNotNone(r)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(sum("initialised" in r.stdout for r in results), 1,
                         [r.stdout for r in results])
        self.assert_connects(self.url(home))
        self.assertEqual(run(home, "db", "stop").returncode, 0)

    def test_21_long_home_uses_a_short_private_socket_dir(self):
        home = self.new_home("long-" + "x" * 100)
        url = self.url(home)
        host = re.search(r"host=([^&]+)", url).group(1)
        self.assertTrue(host.startswith("/tmp/sluice-"), url)
        st = os.stat(host)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assert_connects(url)
        self.assertEqual(run(home, "db", "stop").returncode, 0)

    @unittest.skipUnless(IS_ROOT, "only root hands the cluster to the postgres user")
    def test_22_home_postgres_cannot_reach(self):
        closed = os.path.join(self.tmp, "closed")
        os.mkdir(closed, 0o700)
        home = self.new_home(os.path.join("closed", "home"))
        proc = run(home, "db", "start")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("postgres", proc.stderr)
        self.assertIn(closed, proc.stderr)


if __name__ == "__main__":
    if not os.environ.get("SLUICE_BIN"):
        sys.exit("test_embedded_db.py: SLUICE_BIN is not set (run through ctest)")
    unittest.main(verbosity=2)
