#!/usr/bin/env python3
"""sluice.http, per-host limits, sluice.retry and sluice.spawn / wait / map,
driven through the real binary against the loopback fixture server
(tests/fixtures/http_fixture.py).

Most tests run Lua scripts with `sluice exec` (no database); the one that needs
a run's timeout uses `sluice run` of tests/integration/handlers/http_hang.lua
against a fresh database. Only 127.0.0.1 is contacted; every subprocess and
every wait is bounded.
"""

import glob
import hashlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pgfixture  # noqa: E402

sys.path.insert(0, harness.FIXTURES)
from fixture_client import Fixture  # noqa: E402

TIMEOUT = 60


def free_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def base_env(extra=None):
    """No database, no proxies, a private home (so no stray config file)."""
    env = {k: v for k, v in pgfixture.clean_env().items() if "proxy" not in k.lower()}
    env["SLUICE_HOME"] = HOME.name
    env.pop("SLUICE_CONFIG", None)
    if extra:
        env.update(extra)
    return env


HOME = tempfile.TemporaryDirectory(prefix="sluice-http-")

# /bytes/N serves byte i = i % 256 (tests/fixtures/http_fixture.py)
PATTERN = bytes(range(256)) * 256


def pattern_sha256(n):
    h = hashlib.sha256()
    for _ in range(n // len(PATTERN)):
        h.update(PATTERN)
    h.update(PATTERN[:n % len(PATTERN)])
    return h.hexdigest()


def pending_files(store):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(store, ".partial-*")))

# Runs a command and prints its peak RSS in KiB (the only child this process waits for).
PEAK_RSS = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
            "sys.stdout.buffer.write(p.stdout)\n"
            "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(p.returncode)\n")


class HttpExec(unittest.TestCase):
    """Scripts run by `sluice exec` against one fixture server."""

    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture("http_fixture.py")
        cls.url = cls.fx.url

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()

    def setUp(self):
        self.fx.reset()

    def lua(self, source, *args, env=None, expect_ok=True, timeout=TIMEOUT):
        """Runs source with `sluice exec` (arg[1] = the fixture's URL, then args);
        returns (CompletedProcess, seconds)."""
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(textwrap.dedent(source))
            path = f.name
        try:
            t0 = time.monotonic()
            proc = subprocess.run([pgfixture.sluice_bin(), "exec", path, self.url, *args],
                                  env=base_env(env), capture_output=True, text=True,
                                  timeout=timeout)
            took = time.monotonic() - t0
        finally:
            os.unlink(path)
        if expect_ok and proc.returncode != 0:
            self.fail(f"script exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        self.assertNotIn("Sanitizer", proc.stderr)  # under -DSLUICE_SANITIZE=ON: leaks, misuse
        return proc, took

    def lines(self, proc):
        return proc.stdout.strip().splitlines()

    # -------------------------------------------------------------- responses

    def test_get_status_headers_body_json(self):
        proc, _ = self.lua("""
            local base = arg[1]
            local res, err = sluice.http.get(base .. "/echo", {
              query = { q = "a b&c", ids = {1, 2}, flag = true },
              headers = { ["X-Test"] = "yes", ["X-Num"] = 7 },
            })
            assert(res, err)
            print(res.status, res.ok)
            print(res.headers["Content-Type"], res.headers["content-type"] == res.headers["CONTENT-TYPE"])
            local j = res:json()
            print(j.method, j.path, j.query.q, j.query.ids[1], j.query.ids[2], j.query.flag)
            print(j.headers["x-test"], j.headers["x-num"], j.headers["user-agent"]:match("^sluice/") ~= nil)
            local h = sluice.http.get(base .. "/headers")
            print(h.headers["x-mixed-case"], h.headers["X-MULTI"], h:header("Set-Cookie"))
            local bad = sluice.http.get(base .. "/bytes/10")
            print(#bad.body, bad:json())
        """)
        out = self.lines(proc)
        self.assertEqual(out[0], "200\ttrue")
        self.assertEqual(out[1], "application/json; charset=utf-8\ttrue")
        self.assertEqual(out[2], "GET\t/echo\ta b&c\t1\t2\ttrue")
        self.assertEqual(out[3], "yes\t7\ttrue")
        self.assertEqual(out[4], "yes\t1, 2\ta=b")
        self.assertTrue(out[5].startswith("10\tnil\tresponse is not valid json"), out[5])

    def test_blank_header_values_are_sent_empty(self):
        # a value of blanks alone is an empty value (HTTP trims them), sent as such
        # like "": it was not sent at all, and took sluice's User-Agent with it
        proc, _ = self.lua("""
            local j = sluice.http.get(arg[1] .. "/echo", { headers = {
              ["User-Agent"] = " ", ["X-Blank"] = " \\t ", ["X-Empty"] = "" } }):json()
            print(("[%s] [%s] [%s]"):format(j.headers["user-agent"], j.headers["x-blank"],
                                            j.headers["x-empty"]))
        """)
        self.assertEqual(self.lines(proc), ["[] [] []"])

    def test_post_json_and_body(self):
        proc, _ = self.lua("""
            local base = arg[1]
            local res = assert(sluice.http.post(base .. "/echo", { json = { name = "x", n = 3, list = {1, 2} } }))
            local j = res:json()
            print(j.method, j.headers["content-type"], j.json.name, j.json.n == 3, #j.json.list)
            res = assert(sluice.http.request{ method = "put", url = base .. "/echo", body = "raw text",
                                              headers = { ["Content-Type"] = "text/plain" } })
            j = res:json()
            print(j.method, j.headers["content-type"], j.body)
            res = assert(sluice.http.request{ url = base .. "/echo", json = {} })
            print(res:json().method)
            print(sluice.http.get(base .. "/status/503").status, sluice.http.get(base .. "/status/404").ok)
        """)
        out = self.lines(proc)
        self.assertEqual(out[0], "POST\tapplication/json\tx\ttrue\t2")
        self.assertEqual(out[1], "PUT\ttext/plain\traw text")
        self.assertEqual(out[2], "POST")
        self.assertEqual(out[3], "503\tfalse")  # non-2xx statuses are responses, not errors

    # -------------------------------------------------------------- streaming to the asset store

    def test_save_to_streams_the_body_to_the_asset_store(self):
        n = 64 * 1024 * 1024
        with tempfile.TemporaryDirectory(prefix="sluice-assets-") as store:
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write(textwrap.dedent("""
                    local url = arg[1] .. "/bytes/" .. arg[2]
                    local part = assert(sluice.assets.begin())
                    local res = assert(sluice.http.get(url, { save_to = part, max_bytes = 2^30 }))
                    print(res.status, res.size, #res.body, part:size(), tostring(part):match("^pending asset") ~= nil)
                    print(part:commit("bin"))
                    print(part:discard())  -- after a commit: nothing to do
                    -- the same bytes again: stored once
                    local again = assert(sluice.assets.begin())
                    assert(sluice.http.get(url, { save_to = again, max_bytes = 2^30 }))
                    print(again:commit("bin"))
                """))
                script = f.name
            try:
                proc = subprocess.run([sys.executable, "-c", PEAK_RSS, pgfixture.sluice_bin(), "exec",
                                       script, self.url, str(n)],
                                      env=base_env({"SLUICE_ASSET_DIR": store}), capture_output=True,
                                      text=True, timeout=TIMEOUT)
            finally:
                os.unlink(script)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            self.assertNotIn("Sanitizer", proc.stdout)
            out = self.lines(proc)
            self.assertEqual(out[0], f"200\t{n}\t{256 * 1024}\t{n}\ttrue")
            sha = pattern_sha256(n)
            path = os.path.join(store, sha[:2], sha + ".bin")
            self.assertEqual(out[1], f"{sha}\t{path}\t{n}\ttrue")
            self.assertEqual(out[2], "")
            self.assertEqual(out[3], f"{sha}\t{path}\t{n}\tfalse")
            self.assertEqual(os.path.getsize(path), n)
            with open(path, "rb") as fh:
                self.assertEqual(fh.read(len(PATTERN)), PATTERN)
            self.assertEqual(pending_files(store), [])
            # never held in memory: held, the body alone would be 64 MiB (twice, as a Lua string)
            peak = int(out[-1].split()[1]) / 1024
            self.assertLess(peak, 48, f"peak RSS {peak:.1f} MB for a {n >> 20} MiB download")

    def test_save_to_failures_leave_no_file(self):
        with tempfile.TemporaryDirectory(prefix="sluice-assets-") as store:
            proc, _ = self.lua("""
                local base = arg[1]
                local part = assert(sluice.assets.begin())
                print(sluice.http.get(base .. "/bytes/3000000", { save_to = part, max_bytes = 1000000 }))
                print(part:size())  -- refused on its Content-Length, before any byte
                part:discard()
                print(pcall(part.commit, part, "bin"))
                -- an error status is a response; its body is in the file like any other
                local p404 <close> = assert(sluice.assets.begin())
                local res = sluice.http.get(base .. "/status/404", { save_to = p404 })
                print(res.status, res.size > 0, p404:size() == res.size)
                -- a request cannot start: the pending asset is still usable
                local p = assert(sluice.assets.begin())
                print(sluice.http.get("ftp://127.0.0.1/x", { save_to = p }))
                print(p:size(), (sluice.http.get(base .. "/bytes/5", { save_to = p })).size)
                print(pcall(sluice.http.get, base .. "/bytes/10", { save_to = p }))
                print(pcall(p.commit, p, "BIN"))
                print(select(3, p:commit("bin")))
                -- a second task cannot take the file from under a request
                local slow = assert(sluice.assets.begin())
                local t = sluice.spawn(function()
                  return sluice.http.get(base .. "/slow-body?chunks=5&gap_ms=60&size=10", { save_to = slow })
                end)
                -- until the first piece is in: the transfer is under way (bounded)
                for _ = 1, 500 do if slow:size() > 0 then break end sluice.sleep(0.01) end
                assert(slow:size() > 0 and slow:size() < 50, "the transfer never started")
                print(pcall(slow.discard, slow))
                print(pcall(sluice.http.get, base .. "/bytes/1", { save_to = slow }))
                print(sluice.wait(t).size, slow:size())
                slow:discard()
                print(pcall(sluice.http.get, base .. "/bytes/1", { save_to = "file.bin" }))
                local q = assert(sluice.assets.begin())
                print(pcall(q.commit, q)) -- was "bad argument #1 to 'commit'"
                q:discard()
            """, env={"SLUICE_ASSET_DIR": store})
            out = self.lines(proc)
            self.assertEqual(out[0], "nil\tresponse larger than 1000000 bytes")
            self.assertEqual(out[1], "0")
            self.assertTrue(out[2].startswith("false\t"), out[2])
            self.assertIn("already committed or discarded", out[2])
            self.assertEqual(out[3], "404\ttrue\ttrue")
            self.assertEqual(out[4], "nil\tinvalid url 'ftp://127.0.0.1/x': only http:// and https:// are supported")
            self.assertEqual(out[5], "0\t5")
            self.assertTrue(out[6].startswith("false\t") and "has been written already" in out[6], out[6])
            self.assertTrue(out[7].startswith("false\t") and "extension must be" in out[7], out[7])
            self.assertEqual(out[8], "5\ttrue")
            self.assertTrue(out[9].startswith("false\t") and "still writing" in out[9], out[9])
            self.assertTrue(out[10].startswith("false\t") and "still writing" in out[10], out[10])
            self.assertEqual(out[11], "50\t50")
            self.assertTrue(out[12].startswith("false\t") and "save_to must be a pending asset" in out[12],
                            out[12])
            self.assertEqual(out[13], 'false\tpart:commit: the extension must be a string such as "jpg", not nothing')
            self.assertEqual(pending_files(store), [])
            self.assertEqual(len(glob.glob(os.path.join(store, "*", "*.bin"))), 1)

    def test_stale_pending_files_are_swept(self):
        with tempfile.TemporaryDirectory(prefix="sluice-assets-") as store:
            old, new = os.path.join(store, ".partial-old123"), os.path.join(store, ".partial-new123")
            for path in (old, new):
                with open(path, "wb") as fh:
                    fh.write(b"x")
            two_hours_ago = time.time() - 7200
            os.utime(old, (two_hours_ago, two_hours_ago))
            self.lua("""
                local a = assert(sluice.assets.begin())
                local b = assert(sluice.assets.begin())
                print(a:size(), b:size())
            """, env={"SLUICE_ASSET_DIR": store})
            # the killed process's old file went; a live one's (or a recent one's) stays
            self.assertEqual(pending_files(store), [".partial-new123"])

    def test_asset_store_that_cannot_be_written(self):
        with tempfile.TemporaryDirectory(prefix="sluice-assets-") as d:
            blocker = os.path.join(d, "file")
            with open(blocker, "w") as fh:
                fh.write("not a directory")
            proc, _ = self.lua("print(sluice.assets.begin())", env={"SLUICE_ASSET_DIR": blocker})
            self.assertEqual(self.lines(proc),
                             [f"nil\tcannot use {blocker} as the asset directory: not a directory"])

    def test_sleep_waits_its_whole_time_after_busy_work(self):
        # the loop's clock was taken before 80 ms of work in the same iteration:
        # the timer must count from when sleep is called, not from then
        proc, _ = self.lua("""
            local t0 = sluice.now()
            while sluice.now() - t0 < 0.08 do end
            local s = sluice.now()
            sluice.sleep(0.05)
            local took = sluice.now() - s
            -- and it ends: not 0.05 read in a larger unit (a bound that measures no speed)
            print(took >= 0.05, took < 5)
        """)
        self.assertEqual(self.lines(proc), ["true\ttrue"])

    # -------------------------------------------------------------- transport failures

    def test_timeout(self):
        proc, _ = self.lua("""
            local res, err = sluice.http.get(arg[1] .. "/delay/5000", { timeout = 0.5 })
            print(res, err)
        """)
        self.assertEqual(self.lines(proc), ["nil\ttimed out after 0.5s"])
        # it hung up: the fixture never got to answer after its 5 s
        self.wait_aborted("/delay/5000", 1)

    def test_connection_refused(self):
        proc, _ = self.lua("""
            print(sluice.http.get("http://127.0.0.1:" .. arg[2] .. "/x"))
        """, str(free_port()))
        self.assertEqual(self.lines(proc), ["nil\tconnection refused"])

    def test_unusable_url_is_an_expected_failure(self):
        proc, _ = self.lua("""
            print(sluice.http.get("ftp://127.0.0.1/x"))
            print(sluice.http.get("http://exa mple.com/"))
            print(sluice.http.get(arg[1] .. "/echo\0/more"))  -- not the URL up to the NUL
        """)
        out = self.lines(proc)
        self.assertEqual(out[0], "nil\tinvalid url 'ftp://127.0.0.1/x': only http:// and https:// are supported")
        self.assertTrue(out[1].startswith("nil\tinvalid url 'http://exa mple.com/': "), out[1])
        self.assertEqual(out[2], f"nil\tinvalid url '{self.url}/echo…': it contains a NUL byte")
        self.assertEqual(self.fx.log(), [])

    def test_oversized_body(self):
        proc, _ = self.lua("""
            local base = arg[1]
            print(sluice.http.get(base .. "/bytes/2000000", { max_bytes = 1000000 }))
            print(#sluice.http.get(base .. "/bytes/1000000", { max_bytes = 1000000 }).body)
            print(sluice.http.get(base .. "/slow-body?chunks=20&gap_ms=1&size=1000", { max_bytes = 5000 }))
        """)
        self.assertEqual(self.lines(proc), ["nil\tresponse larger than 1000000 bytes", "1000000",
                                            "nil\tresponse larger than 5000 bytes"])

    def test_head_is_not_held_to_max_bytes(self):
        # a HEAD's Content-Length is the size of a body that never comes: asking
        # a large file's size before downloading it is what HEAD is for
        proc, _ = self.lua("""
            local base = arg[1]
            local res, err = sluice.http.head(base .. "/bytes/100000000")
            print(res and res.status, res and res.headers["content-length"], res and res.size, err)
            res, err = sluice.http.head(base .. "/bytes/1000", { max_bytes = 10 })
            print(res and res.status, res and res.headers["content-length"], res and res.size, err)
        """)
        self.assertEqual(self.lines(proc), ["200\t100000000\t0\tnil", "200\t1000\t0\tnil"])

    def test_folded_response_headers_are_unfolded(self):
        # obsolete line folding (RFC 9112 5.2): a line that starts with a space or
        # a tab continues the field before; the fixture server cannot send one
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(TIMEOUT)

        def answer():
            try:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        piece = conn.recv(4096)
                        if not piece:
                            return
                        data += piece
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Fold: first\r\n  second\r\n\tthird\r\n"
                                 b"X-Multi: a\r\nX-Multi: b\r\n c\r\nX-Empty:\r\n late\r\n"
                                 b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            proc, _ = self.lua("""
                local res = assert(sluice.http.get("http://127.0.0.1:" .. arg[2] .. "/"))
                print(res.headers["x-fold"])
                print(res.headers["x-multi"])
                print(res.headers["x-empty"])
                print(res.body)
            """, str(srv.getsockname()[1]))
        finally:
            srv.close()
            thread.join(TIMEOUT)
        self.assertEqual(self.lines(proc), ["first second third", "a, b c", "late", "ok"])

    def test_redirect_limit(self):
        proc, _ = self.lua("""
            local base = arg[1]
            local res = assert(sluice.http.get(base .. "/redirect/5"))
            print(res.status, res:json().redirected, res.url:match("/redirect/0$") ~= nil)
            print(sluice.http.get(base .. "/redirect/6"))
            res = sluice.http.get(base .. "/redirect/3", { follow = false })
            print(res.status, res.headers.location)
            print(sluice.http.get(base .. "/redirect/3", { max_redirects = 2 }))
        """)
        self.assertEqual(self.lines(proc), ["200\ttrue\ttrue", "nil\ttoo many redirects",
                                            "302\t/redirect/2", "nil\ttoo many redirects"])

    def test_redirect_keeps_the_body_of_other_methods(self):
        # a POST becomes a GET after 301/302/303, as browsers do; any other method
        # goes again as it was, body included (it went without its body: an empty
        # PUT after an http -> https redirect replaced what it was meant to write)
        proc, _ = self.lua("""
            local base = arg[1]
            for _, m in ipairs{"PUT", "PATCH", "DELETE"} do
              for _, st in ipairs{301, 302, 303, 307, 308} do
                local res = assert(sluice.http.request{ method = m, body = "data",
                  url = base .. "/redirect-to?url=/echo&status=" .. st })
                local j = res:json()
                print(m, st, res.status, j.method, j.body, j.headers["content-length"])
              end
            end
            for _, st in ipairs{301, 302, 303, 307} do
              local j = assert(sluice.http.post(base .. "/redirect-to?url=/echo&status=" .. st,
                                                { body = "data" })):json()
              print("POST", st, j.method, j.body)
            end
        """)
        expect = [f"{m}\t{st}\t200\t{m}\tdata\t4" for m in ("PUT", "PATCH", "DELETE")
                  for st in (301, 302, 303, 307, 308)]
        expect += ["POST\t301\tGET\t", "POST\t302\tGET\t", "POST\t303\tGET\t",
                   "POST\t307\tPOST\tdata"]
        self.assertEqual(self.lines(proc), expect)

    def test_misuse_raises(self):
        for src, msg in [
            ('sluice.http.get(42)', "url must be a string"),
            ('sluice.http.request{ url = arg[1], bogus = 1 }', "unknown option 'bogus'"),
            ('sluice.http.get(arg[1], { headers = { ["X-A"] = "a\\r\\nX-B: b" } })', "line breaks"),
            ('sluice.http.get(arg[1], { timeout = "soon" })', "timeout must be a number"),
            ('sluice.http.request{ url = arg[1], body = "x", json = {} }', "body or json"),
            ('sluice.http.limit("h", { rate = -1 })', "rate must be"),
            ('sluice.http.get(arg[1], { headers = { ["bad name"] = "x" } })', "not a valid header name"),
            # HTTP's other delimiters, which went out in the name as given
            ('sluice.http.get(arg[1], { headers = { ["X@Y"] = "x" } })', "'X@Y' is not a valid header name"),
            ('sluice.http.get(arg[1], { headers = { ["X?"] = "x" } })', "'X?' is not a valid header name"),
            ('sluice.http.get(arg[1], { headers = { ["<X>"] = "x" } })', "'<X>' is not a valid header name"),
            ('sluice.http.get(arg[1], { headers = { ["X\\\\Y"] = "x" } })', "is not a valid header name"),
            ('sluice.http.request{ url = arg[1], method = "G T" }', "bad method 'G T'"),
            # infinity, or a number of seconds too large for libcurl's milliseconds,
            # was converted to a long undefined (and sent with no timeout at all)
            ('sluice.http.get(arg[1], { timeout = math.huge })',
             "timeout must be a number of at least 0.001 and at most 315360000, not inf"),
            ('sluice.http.get(arg[1], { timeout = 1e300 })', "timeout must be a number of at least 0.001"),
            # 2^32 + 1 cast to an int was a cap of 1
            ('sluice.http.limit("h", { concurrency = 2^32 + 1 })',
             "concurrency must be a whole number of at least 0 and at most 100000"),
            # save_to misuse named the library's line (http.lua) instead of the caller's
            ('sluice.http.get(arg[1], { save_to = "file.bin" })',
             "save_to must be a pending asset from sluice.assets.begin(), not a string"),
            ('local p = sluice.assets.begin(); p:discard(); sluice.http.get(arg[1], { save_to = p })',
             "save_to: the pending asset was already committed or discarded"),
            # one request, then the others waited for ever
            ('sluice.http.limit("h", { rate = 1, per = math.huge })',
             "per must be a finite number of at least 0.001, not inf"),
        ]:
            # on the second line of a function: the error names the script's line,
            # not the library's
            proc, _ = self.lua(f"local function f()\n  {src}\nend\nf()\n", expect_ok=False)
            self.assertEqual(proc.returncode, 1, src)
            self.assertRegex(proc.stderr, r"tmp\w*\.lua:2: sluice\.http\.\w+: .*" + re.escape(msg), src)

    def test_apify_start_timeout_out_of_range_is_a_configuration_error(self):
        # "1e400" read as infinity and went on to the start request's timeout
        for value in ("1e400", "0", "abc"):
            proc, _ = self.lua('print((select(2, require("sluice.apify").config())))',
                               env={"APIFY_TOKEN": "t", "APIFY_START_TIMEOUT": value})
            self.assertEqual(proc.stdout.strip(), "APIFY_START_TIMEOUT must be a number of seconds greater "
                                                  f"than 0 and at most 315360000 (3650 days), not \"{value}\"")

    def test_llm_settings_that_are_set_but_unusable_are_configuration_errors(self):
        # "abc" and "2.5" were 4 in silence, "0" was 1, a negative price gave negative costs,
        # and 2^32 + 1 went on to sluice.http.limit
        for var, value, message in [
            ("LLM_CONCURRENCY", "abc", "LLM_CONCURRENCY must be a whole number from 1 to 100000"),
            ("LLM_CONCURRENCY", "0", "LLM_CONCURRENCY must be a whole number from 1 to 100000"),
            ("LLM_CONCURRENCY", "4294967297", "LLM_CONCURRENCY must be a whole number from 1 to 100000"),
            ("LLM_PRICE_INPUT_PER_1M", "-1", "LLM_PRICE_INPUT_PER_1M must be a finite number of USD"),
            ("LLM_PRICE_OUTPUT_PER_1M", "1e400", "LLM_PRICE_OUTPUT_PER_1M must be a finite number of USD"),
        ]:
            proc, _ = self.lua('print(select(2, require("sluice.llm").config()))',
                               env={"LLM_API_KEY": "k", var: value})
            self.assertEqual(proc.stdout.strip(), f'{message}, not "{value}"\tconfig'
                             if var == "LLM_CONCURRENCY" else f'{message}, at least 0, not "{value}"\tconfig')
        proc, _ = self.lua('local c = require("sluice.llm").config() print(c.concurrency, c.price_out)',
                           env={"LLM_API_KEY": "k", "LLM_CONCURRENCY": "3", "LLM_PRICE_OUTPUT_PER_1M": "0"})
        self.assertEqual(proc.stdout.strip(), "3\t0")

    def test_graph_retry_delays_past_3650_days_are_refused(self):
        # "1e400" read as infinity: the first retry slept for ever
        proc, _ = self.lua('local ok, e = pcall(require("sluice.graph").client, nil, { token = "t" }) print(tostring(e))',
                           env={"META_GRAPH_RETRY_DELAYS": "15,1e400"})
        self.assertEqual(proc.stdout.strip(), 'META_GRAPH_RETRY_DELAYS: "1e400" is not a number of seconds')

    # -------------------------------------------------------------- retry

    def test_429_retry_after_honoured(self):
        proc, _ = self.lua("""
            local res, err = sluice.retry(function()
              return sluice.http.get(arg[1] .. "/flaky/ra?fail=2&status=429&retry_after=1")
            end, { attempts = 4, base = 0.01 })
            print(res.status, res:json().attempt == 3)
        """)
        self.assertEqual(self.lines(proc), ["200\ttrue"])
        log = self.fx.log("/flaky/ra")
        self.assertEqual([e["status"] for e in log], [429, 429, 200])
        for prev, nxt in zip(log, log[1:]):
            self.assertGreaterEqual(nxt["t"] - prev["t_end"], 0.95, log)
        self.assertIn("retry 2/4 in 1.00s after status 429", proc.stderr)

    def test_retry_policy(self):
        proc, _ = self.lua("""
            local base = arg[1]
            local calls = 0
            local res = sluice.retry(function() calls = calls + 1; return sluice.http.get(base .. "/status/404") end)
            print(res.status, calls)             -- 4xx: not retried
            calls = 0
            res = sluice.retry(function() calls = calls + 1; return sluice.http.get(base .. "/status/500") end,
                               { attempts = 3, base = 0.01 })
            print(res.status, calls)             -- 5xx: retried, last response returned
            calls = 0
            local r2, err = sluice.retry(function() calls = calls + 1
                return sluice.http.get("http://127.0.0.1:" .. arg[2] .. "/") end, { attempts = 2, base = 0.01 })
            print(r2, err, calls)                -- transport error: retried
            calls = 0
            res = sluice.retry(function() calls = calls + 1; return sluice.http.get(base .. "/status/404") end,
                               { base = 0.01, retry_on = function(r) return r.status == 404 end })
            print(res.status, calls)             -- custom predicate
            res = sluice.retry(function() return sluice.http.get(base .. "/flaky/long?fail=1&status=503&retry_after=3600") end)
            print(res.status)                    -- Retry-After beyond max_retry_after: give up
        """, str(free_port()))
        self.assertEqual(self.lines(proc), ["404\t1", "500\t3", "nil\tconnection refused\t2",
                                            "404\t3", "503"])

    # -------------------------------------------------------------- limits

    def assert_spacing(self, log, gap, n):
        # arrivals at the fixture: the first request alone also opens the
        # connection the others reuse, which on a busy machine takes tens of
        # milliseconds, so its gap to the second is measured short by that
        self.assertEqual(len(log), n, log)
        starts = sorted(e["t"] for e in log)
        for a, b in zip(starts[1:], starts[2:]):
            self.assertGreaterEqual(b - a, gap * 0.85, starts)
        self.assertGreaterEqual(starts[-1] - starts[0], (n - 1) * gap * 0.9, starts)

    def test_rate_limit_from_lua(self):
        proc, took = self.lua("""
            sluice.http.limit("127.0.0.1", { rate = 5, per = 1, burst = 1 })
            local tasks = {}
            for i = 1, 6 do
              tasks[i] = sluice.spawn(function() return sluice.http.get(arg[1] .. "/echo").status end)
            end
            local r = sluice.wait(tasks)
            print(table.concat(r, ","))
            local l = sluice.http.limit("127.0.0.1")
            print(l.rate, l.per, l.burst, l.in_flight, l.waiting)
        """)
        self.assertEqual(self.lines(proc), ["200,200,200,200,200,200", "5.0\t1.0\t1.0\t0\t0"])
        self.assert_spacing(self.fx.log("/echo"), 0.2, 6)

    def test_rate_limit_from_config_and_limit_key(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("# limits\nhttp_limit = graph 4/1s burst=1 concurrency=2\n")
            conf = f.name
        try:
            proc, _ = self.lua("""
                local l = sluice.http.limit("graph")
                print(l.rate, l.per, l.burst, l.concurrency)
                sluice.map({1, 2, 3, 4, 5}, function()
                  return assert(sluice.http.get(arg[1] .. "/echo", { limit_key = "graph" }))
                end, { concurrency = 5 })
            """, env={"SLUICE_CONFIG": conf})
        finally:
            os.unlink(conf)
        self.assertEqual(self.lines(proc), ["4.0\t1.0\t1.0\t2"])
        self.assert_spacing(self.fx.log("/echo"), 0.25, 5)

    def config_file(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_code_cannot_loosen_the_config_limit(self):
        # a Lua setting replaced the config file's: a library's concurrency = 8 let
        # eight requests at once through to an API the operator had limited to one
        conf = self.config_file("http_limit = 127.0.0.1 4/1s concurrency=1\n")
        proc, _ = self.lua("""
            local function show(l)
              print(l.rate, l.per, l.concurrency, l.source.rate, l.source.concurrency,
                    l.config.concurrency, l.code and l.code.concurrency)
            end
            show(sluice.http.limit("127.0.0.1"))
            -- a library's looser default, set again as it is loaded again: logged once
            for _ = 1, 3 do sluice.http.limit("127.0.0.1", { rate = 100, concurrency = 8 }) end
            show(sluice.http.limit("127.0.0.1"))
            local items = {}
            for i = 1, 6 do items[i] = i end
            local r = sluice.map(items, function()
              return sluice.http.get(arg[1] .. "/delay/50").status
            end, { concurrency = 6 })
            print(#r)
            sluice.http.limit("127.0.0.1", false)   -- removes the code's only
            show(sluice.http.limit("127.0.0.1"))
        """, env={"SLUICE_CONFIG": conf})
        self.assertEqual(self.lines(proc), [
            "4.0\t1.0\t1\tconfig\tconfig\t1\tnil",
            "4.0\t1.0\t1\tconfig\tconfig\t1\t8",
            "6",
            "4.0\t1.0\t1\tconfig\tconfig\t1\tnil",
        ])
        stats = self.fx.stats()
        self.assertEqual(stats["requests"], 6, stats)
        self.assertEqual(stats["max_in_flight"], 1, stats)  # one at a time, as configured
        kept = [l for l in proc.stderr.splitlines() if "the config file's is kept" in l]
        self.assertEqual(len(kept), 1, proc.stderr)
        self.assertIn("limit=127.0.0.1", kept[0])
        self.assertIn('kept="rate, burst, concurrency"', kept[0])

    def test_code_can_tighten_the_config_limit(self):
        conf = self.config_file("http_limit = 127.0.0.1 concurrency=4\n")
        proc, _ = self.lua("""
            sluice.http.limit("127.0.0.1", { concurrency = 2 })
            local l = sluice.http.limit("127.0.0.1")
            print(l.concurrency, l.source.concurrency, l.config.concurrency, l.code.concurrency)
            local items = {}
            for i = 1, 8 do items[i] = i end
            print(#sluice.map(items, function()
              return sluice.http.get(arg[1] .. "/delay/100").status
            end, { concurrency = 8 }))
        """, env={"SLUICE_CONFIG": conf})
        self.assertEqual(self.lines(proc), ["2\tcode\t4\t2", "8"])
        stats = self.fx.stats()
        self.assertEqual(stats["max_in_flight"], 2, stats)
        self.assertNotIn("the config file's is kept", proc.stderr)

    def test_bad_config_limit_is_reported(self):
        for line, message in [
            ("graph 4/fortnight", "the period must read like"),
            # strtod reads these: an infinite burst or rate was no limit, a NaN burst was taken
            ("graph 4/s burst=inf", "burst must be a finite number"),
            ("graph 4/s burst=nan", "burst must be a finite number"),
            ("graph 1e400/s", "the rate must read like"),
            # sluice.http.limit takes no period under 1 ms either
            ("graph 4/0.0001ms", "the period must be at least 1ms"),
            # a period of 0 reads well enough: it was told to "read like 60s, 1m, 500ms or 1h"
            ("graph 4/0ms", "the period must be at least 1ms"),
            ("graph 4/0", "the period must be at least 1ms"),
        ]:
            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
                f.write(f"http_limit = {line}\n")
                conf = f.name
            try:
                proc, _ = self.lua("print(1)", env={"SLUICE_CONFIG": conf}, expect_ok=False)
            finally:
                os.unlink(conf)
            self.assertNotEqual(proc.returncode, 0, line)
            self.assertIn(":1: bad http_limit", proc.stderr)
            self.assertIn(message, proc.stderr)

    def test_concurrency_cap(self):
        proc, took = self.lua("""
            sluice.http.limit("127.0.0.1", { concurrency = 4 })
            local tasks = {}
            for i = 1, 20 do
              tasks[i] = sluice.spawn(function() return sluice.http.get(arg[1] .. "/delay/200").status end)
            end
            sluice.sleep(0.1)
            local l = sluice.http.limit("127.0.0.1")
            print(l.in_flight, l.waiting)
            for i = 17, 20 do tasks[i]:cancel() end     -- waiting ones leave the queue
            print(sluice.http.limit("127.0.0.1").waiting)
            print(#sluice.wait({ table.unpack(tasks, 1, 16) }))
        """)
        self.assertEqual(self.lines(proc), ["4\t16", "12", "16"])
        stats = self.fx.stats()
        self.assertEqual(stats["max_in_flight"], 4, stats)
        self.assertEqual(stats["requests"], 16, stats)
        self.assertGreaterEqual(took, 0.8)  # 16 requests of 0.2 s, 4 at a time

    def test_unlimited_requests_run_concurrently(self):
        proc, _ = self.lua("""
            local r = sluice.map({}, function() end)
            local items = {}
            for i = 1, 30 do items[i] = i end
            r = sluice.map(items, function() return sluice.http.get(arg[1] .. "/delay/300").status end,
                           { concurrency = 30 })
            print(#r)
        """)
        self.assertEqual(self.lines(proc), ["30"])
        # all at once, as the fixture saw them
        self.assertEqual(self.fx.stats()["max_in_flight"], 30)

    # -------------------------------------------------------------- spawn / wait

    def test_spawn_wait_results_and_child_error(self):
        proc, _ = self.lua("""
            local t1 = sluice.spawn(function(x) sluice.sleep(0.05); return x * 2, "extra" end, 21)
            local t2 = sluice.spawn(function() return sluice.http.get(arg[1] .. "/delay/100").status end)
            print(sluice.wait(t1))
            print(sluice.wait(t1, t2))
            local r, e = sluice.wait({ t2, sluice.spawn(function() return nil, "nope" end) })
            print(r[1], r[2], e[2])
            -- a child that raises: wait raises its error at once, siblings keep going
            local slow = sluice.spawn(function() sluice.sleep(10); return 1 end)
            local bad = sluice.spawn(function() sluice.sleep(0.05); error("boom") end)
            local ok, err = pcall(sluice.wait, slow, bad)
            print(ok, err, bad:status(), slow:status())
            print(slow:cancel(), slow:status(), pcall(sluice.wait, slow))
            -- map: fail fast, the other calls are cancelled
            local ok2, err2 = pcall(sluice.map, { 1, 2, 3, 4 }, function(i)
              if i == 2 then sluice.sleep(0.5); error("item 2 failed") end
              sluice.http.get(arg[1] .. "/hang?seconds=20")
            end, { concurrency = 4 })
            print(ok2, err2)
            -- an error object (sluice.permanent) comes through as it is
            local ok3, err3 = pcall(sluice.wait, sluice.spawn(function() error(sluice.permanent("stop")) end))
            print(ok3, err3.permanent, tostring(err3))
        """)
        out = self.lines(proc)
        self.assertEqual(out[0], "42\textra")
        self.assertEqual(out[1], "42\t200")
        self.assertEqual(out[2], "200\tnil\tnope")
        # raised at once: the slow sibling is still running
        self.assertRegex(out[3], r"^false\t\S+:\d+: boom\tfailed\trunning$")
        self.assertEqual(out[4], "true\tcancelled\tfalse\tsluice.wait: a task was cancelled before it finished")
        self.assertRegex(out[5], r"^false\t\S+:\d+: item 2 failed$")
        self.assertEqual(out[6], "false\ttrue\tstop")
        # the hanging map calls were cancelled, not waited for: the fixture saw
        # their connections close (after 20 s they would have been answered)
        self.wait_aborted("/hang", 3)

    def test_script_end_cancels_children(self):
        proc, took = self.lua("""
            sluice.spawn(function() sluice.http.get(arg[1] .. "/hang?seconds=30") end)
            sluice.spawn(function() sluice.sleep(100) end)
            sluice.sleep(0.2)
            error("parent gives up")
        """, expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("parent gives up", proc.stderr)
        # its children were cancelled, not waited for: it ended before the first
        # of them would have (30 s), and the fixture saw the hang-up
        self.assertLess(took, 30)
        self.wait_aborted("/hang", 1)

    def test_a_failed_child_is_said_on_stderr_even_when_nothing_waits_for_it(self):
        # as a run's log has a failed child's traceback, a script's stderr has it:
        # one nothing waits for was lost without a word
        proc, _ = self.lua("""
            local lost = sluice.spawn(function() sluice.sleep(0.01); error("nobody waits") end)
            for _ = 1, 500 do  -- until it has failed, bounded; not waited for
              if lost:status() ~= "running" then break end
              sluice.sleep(0.01)
            end
            print(lost:status(), pcall(sluice.wait, sluice.spawn(function() error("waited for") end)))
        """)
        self.assertRegex(self.lines(proc)[0], r"^failed\tfalse\t\S+:\d+: waited for$")
        self.assertRegex(proc.stderr, r"a task started by sluice\.spawn failed: \S+\.lua:2: nobody waits\n"
                                      r"stack traceback:\n")
        self.assertRegex(proc.stderr, r"a task started by sluice\.spawn failed: \S+\.lua:7: waited for\n")

    def test_a_finished_child_keeps_its_outcome_after_its_parent_ends(self):
        # the parent frees its children when it ends; a handle kept elsewhere
        # still says how a finished one ended (a running one is cancelled)
        proc, _ = self.lua("""
            local done, failed, running
            sluice.wait(sluice.spawn(function()
              done = sluice.spawn(function() return 7, "x" end)
              failed = sluice.spawn(function() error("child boom") end)
              running = sluice.spawn(function() sluice.sleep(10) end)
              -- until both have ended (uncollected), bounded
              for _ = 1, 500 do
                if done:status() ~= "running" and failed:status() ~= "running" then break end
                sluice.sleep(0.001)
              end
            end))
            print(done:status(), sluice.wait(done))
            print(done:status(), sluice.wait(done))
            print(failed:status(), pcall(sluice.wait, failed))
            print(running:status(), pcall(sluice.wait, running))
        """)
        out = self.lines(proc)
        self.assertEqual(out[0], "done\t7\tx")
        self.assertEqual(out[1], "done\t7\tx")
        self.assertRegex(out[2], r"^failed\tfalse\t\S+:\d+: child boom$")
        self.assertEqual(out[3], "cancelled\tfalse\tsluice.wait: a task was cancelled before it finished")

    def test_spawn_misuse(self):
        for src, msg in [
            ("sluice.spawn(42)", "expected a function"),
            ("sluice.wait(42)", "expected a task from sluice.spawn"),
            ("sluice.map({1}, print, { concurrency = 0 })", "concurrency must be"),
            ("sluice.map({1}, print, { concurency = 2 })", "unknown option 'concurency' (known: concurrency)"),
            ("coroutine.wrap(function() sluice.spawn(print) end)()", "can only be called from a sluice task"),
        ]:
            proc, _ = self.lua(src, expect_ok=False)
            self.assertEqual(proc.returncode, 1, src)
            self.assertIn(msg, proc.stderr, src)

    def test_waiting_where_no_wait_is_possible_says_where(self):
        # a call that waits, made from a function C calls (a sort comparator, a
        # gsub replacement, __tostring), raised Lua's "attempt to yield across a
        # C-call boundary", with no line and no hint
        for src, name in [
            ("table.sort({2, 1}, function(a, b) sluice.sleep(0.001) return a < b end)", "sleep"),
            ('("ab"):gsub(".", function(c) sluice.sleep(0) return c end)', "sleep"),
            ("tostring(setmetatable({}, { __tostring = function() sluice.sleep(0) return '' end }))",
             "sleep"),
        ]:
            proc, _ = self.lua(src, expect_ok=False)
            self.assertEqual(proc.returncode, 1, src)
            self.assertRegex(proc.stderr, rf"\.lua:1: '{name}' cannot wait here \(inside a metamethod, or "
                             r"a function that C calls, such as a table\.sort comparator or a "
                             r"string\.gsub replacement function\)", src)
            self.assertNotIn("C-call boundary", proc.stderr, src)

    def wait_aborted(self, path, n, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            log = self.fx.log(path)
            if len(log) >= n and all(e.get("aborted") for e in log[:n]):
                return log
            if time.monotonic() > deadline:
                self.fail(f"the fixture never saw {n} aborted request(s) on {path}: {log}")
            time.sleep(0.05)

    # -------------------------------------------------------------- redaction

    def test_credentials_never_logged(self):
        proc, _ = self.lua("""
            local res, err = sluice.http.get("http://127.0.0.1:" .. arg[2] .. "/x?token=SECRET1&a=1",
              { headers = { Authorization = "Bearer SECRET2", Cookie = "sid=SECRET3" } })
            print(res, err)
            res = sluice.http.get(arg[1] .. "/echo", { query = { api_key = "SECRET4", q = "visible" },
                                                       headers = { Authorization = "Bearer SECRET5" } })
            print(res.status)
            print(sluice.http.get("http://bad host/?access_token=SECRET6"))
        """, str(free_port()), env={"SLUICE_LOG_LEVEL": "debug"})
        text = proc.stdout + proc.stderr
        for i in range(1, 7):
            self.assertNotIn(f"SECRET{i}", text)
        self.assertIn("connection refused", proc.stdout)
        self.assertIn("[redacted]", proc.stdout)  # the bad-URL message, redacted
        self.assertIn("q=visible", proc.stderr)   # the debug line is there
        # the server did get the credentials: only the logs are clean
        entry = self.fx.log("/echo")[0]
        self.assertEqual(entry["query"]["api_key"], "SECRET4")
        self.assertEqual(entry["headers"]["authorization"], "Bearer SECRET5")


class HttpRun(harness.HttpFixtureTest):
    """A run's timeout cancels the request it is waiting on."""

    def test_run_timeout_cancels_request(self):
        self.fx.reset()
        params = json.dumps({"url": self.fx.url + "/hang?seconds=60"})
        # the run ends at its timeout: the command exits (bounded by a wait
        # well short of the request's 60 s)
        proc = self.sluice("run", "http_hang", "--params", params, check=False, timeout=45)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("timed out after 1s", proc.stdout + proc.stderr)
        self.assertNotIn("Sanitizer", proc.stderr)
        deadline = time.monotonic() + 10
        while True:
            log = self.fx.log("/hang")
            if log and log[0].get("aborted"):
                break
            self.assertLess(time.monotonic(), deadline, f"the fixture never saw the hang-up: {log}")
            time.sleep(0.05)
        # hung up long before the fixture would have answered (60 s)
        self.assertLess(log[0]["t_end"] - log[0]["t"], 45)

    def test_run_cut_off_mid_download_leaves_no_pending_file(self):
        self.fx.reset()
        with tempfile.TemporaryDirectory(prefix="sluice-assets-") as store:
            os.chmod(store, 0o777)
            with self.serve("--concurrency", "2", env=self.env({"SLUICE_ASSET_DIR": store})) as d:
                self.wait_listening()
                url = self.fx.url + "/slow-body?chunks=100&gap_ms=100&size=1000"
                self.sluice("queue", "asset_slow", "--params", json.dumps({"url": url}),
                            env=self.env({"SLUICE_ASSET_DIR": store}))
                self.wait_for(lambda: pending_files(store), message="the download never started")
                self.wait_for(lambda: self.scalar("SELECT count(*) FROM sluice.scheduled_job_runs "
                                                  "WHERE job_type = 'asset_slow' AND status = 'failed'") == "1",
                              message="the run never timed out")
                err = self.scalar("SELECT error_message FROM sluice.scheduled_job_runs WHERE job_type = 'asset_slow'")
                self.assertIn("timed out after 1s", err)
                # removed as the run ended, while the daemon lives on (not when it exits)
                self.assertEqual(pending_files(store), [])
                self.assertIsNone(d.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
