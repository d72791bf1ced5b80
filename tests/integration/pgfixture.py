#!/usr/bin/env python3
"""The test suite's Postgres: one embedded sluice cluster shared by the tests.

As a ctest fixture (tests/CMakeLists.txt):
    pgfixture.py start   initialise (first use) and start the cluster under
                         $SLUICE_TEST_HOME with `$SLUICE_BIN db start`; print its URL
    pgfixture.py stop    stop it, then remove $SLUICE_TEST_HOME
    pgfixture.py url     print its URL

As a module, for tests that need a database of their own:
    import pgfixture
    url = pgfixture.fresh_database("queue")   # a new, empty database; its URL
    pgfixture.psql(url, "select 1")           # -> "1"
    pgfixture.drop_database(url)

Python 3 standard library only; the cluster is reached with psql.
"""

import itertools
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

TIMEOUT = 120  # seconds for any one command

_counter = itertools.count(1)


def _require(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"pgfixture: {name} is not set (run through ctest, or set it)")
    return value


def sluice_bin():
    return _require("SLUICE_BIN")


def test_home():
    return _require("SLUICE_TEST_HOME")


def clean_env(extra=None):
    """The environment for sluice and psql: no DATABASE_URL or libpq overrides, so
    the embedded cluster is the one in use."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SLUICE_HOME") and not k.startswith("PG")}
    if extra:
        env.update(extra)
    return env


def sluice(*args, home=None, env=None, check=True):
    """Runs `sluice --home HOME args…`; returns the CompletedProcess (text)."""
    cmd = [sluice_bin(), "--home", home or test_home(), *args]
    proc = subprocess.run(cmd, env=clean_env(env), capture_output=True, text=True,
                          timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


def base_url():
    """The cluster's URL (database `sluice`), starting it if needed."""
    return sluice("db", "url").stdout.strip()


def with_database(url, dbname):
    """url with its database replaced by dbname."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def psql(url, sql, check=True):
    """Runs sql with psql (unaligned, tuples only); returns stdout stripped."""
    proc = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def fresh_database(prefix="t"):
    """Creates an empty database in the test cluster and returns its URL."""
    prefix = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:30] or "t"
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    url = base_url()
    psql(url, f'DROP DATABASE IF EXISTS "{name}"')
    psql(url, f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url):
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    psql(with_database(url, "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _removable(home):
    """Only a directory holding nothing but what the fixture made is removed."""
    try:
        return set(os.listdir(home)) <= {"pg", "pg.lock"}
    except FileNotFoundError:
        return False


def start():
    proc = sluice("db", "start", check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        return 1
    sys.stdout.write(proc.stdout)
    print(base_url())
    return 0


def stop():
    home = test_home()
    if not os.path.isdir(home):
        print(f"{home} does not exist: nothing to stop")
        return 0
    proc = sluice("db", "stop", check=False)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return 1
    if _removable(home):
        shutil.rmtree(home)
    else:
        print(f"leaving {home} in place: it holds files the fixture did not make")
    return 0


def main(argv):
    if len(argv) != 2 or argv[1] not in ("start", "stop", "url"):
        sys.stderr.write("usage: pgfixture.py start|stop|url\n")
        return 2
    if argv[1] == "start":
        return start()
    if argv[1] == "stop":
        return stop()
    print(base_url())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
