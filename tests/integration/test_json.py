#!/usr/bin/env python3
"""Numbers keep every digit on their way through JSON (src/json.c): parameters
queued from the CLI, a run's result, a dataset report, sluice.db.query table
parameters and jsonb columns. lua-cjson 2.1.0, the encoder before, kept 14
significant digits: 123456789012345 was stored as 123456789012340 and 0.1 + 0.2
as 0.3; its decoder read numbers as doubles, so 9007199254740993 (2^53 + 1)
came back as 9007199254740992 and 9223372036854775807 as a float that the
integer check refused.
Handlers used: examples/handlers/echo.lua, tests/integration/handlers/number_probe.lua."""

import json
import math
import os
import random
import struct
import subprocess
import tempfile
import unittest

import harness
import pgfixture


class JsonNumbers(harness.SluiceTest):

    def text(self, sql):
        return self.scalar(sql).strip()

    def test_queued_parameters_and_results_keep_every_digit(self):
        echo = self.sluice("queue", "echo", "--params", '{"records": 123456789012345}').stdout.strip()
        probe = self.sluice("queue", "number_probe", "--params",
                            '{"records": 123456789012345, "ratio": 0.30000000000000004}').stdout.strip()
        # as stored by the queue (params are validated in Lua and encoded again)
        self.assertEqual(self.text(f"SELECT parameters ->> 'records' FROM sluice.scheduled_jobs WHERE id = '{echo}'"),
                         "123456789012345")
        self.assertEqual(self.text(f"SELECT parameters ->> 'ratio' FROM sluice.scheduled_jobs WHERE id = '{probe}'"),
                         "0.30000000000000004")
        with self.serve():
            self.wait_jobs_done(2)
        runs = {job: f"FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'" for job in (echo, probe)}
        self.assertEqual(self.text(f"SELECT status {runs[echo]}"), "completed")
        self.assertEqual(self.text(f"SELECT status {runs[probe]}"), "completed")
        self.assertEqual(self.text(f"SELECT parameters ->> 'records' {runs[echo]}"), "123456789012345")
        self.assertEqual(self.text(f"SELECT result ->> 'records' {runs[echo]}"), "123456789012345")
        result = {k: self.text(f"SELECT result ->> '{k}' {runs[probe]}")
                  for k in ("records", "ratio", "sum", "pi", "big", "min", "db_records", "db_sum")}
        self.assertEqual(result, {
            "records": "123456789012345", "ratio": "0.30000000000000004",
            "sum": "0.30000000000000004", "pi": "3.141592653589793",
            "big": "123456789012345678", "min": "-9223372036854775808",
            # sent to Postgres as a table parameter
            "db_records": "123456789012345", "db_sum": "0.30000000000000004",
        })
        # a jsonb column, decoded by sluice.db.query
        self.assertEqual(self.text(f"SELECT (result ->> 'db_json_big') || ' ' || (result ->> 'db_json_min') "
                                   f"{runs[probe]}"), "123456789012345678 -9223372036854775808")
        self.assertEqual(self.text(f"SELECT parameters ->> 'ratio' {runs[probe]}"), "0.30000000000000004")
        # the dataset report
        report = self.text("SELECT records_affected::text || ' ' || (metadata ->> 'ratio') "
                           "FROM sluice.dataset_status WHERE dataset_key = 'numbers'")
        self.assertEqual(report, "123456789012345 0.30000000000000004")

    def test_integers_beyond_2_53_are_decoded_exactly(self):
        numbers = ("9007199254740993", "9223372036854775807")
        jobs = {n: self.sluice("queue", "echo", "--params", f'{{"records": {n}}}').stdout.strip()
                for n in numbers}
        for n, job in jobs.items():
            self.assertEqual(self.text(f"SELECT parameters ->> 'records' FROM sluice.scheduled_jobs "
                                       f"WHERE id = '{job}'"), n)
        with self.serve():
            self.wait_jobs_done(2)
        for n, job in jobs.items():
            run = self.one("SELECT status, result ->> 'records' AS records, parameters ->> 'records' AS params "
                           f"FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job}'")
            self.assertEqual(run, {"status": "completed", "records": n, "params": n})


class JsonRoundTrip(unittest.TestCase):
    """sluice.json.encode(sluice.json.decode(doc)) against Python's json, on
    random documents (seeded): every string, every integer within 64 bits and
    every double comes back as it was."""

    POOL = ["a", "b", '"', "\\", "/", "\n", "\t", "\x01", "\x7f", "é", "€", "\U0001d11e", "\u2028", " ", "0"]

    def value(self, rng, depth=0):
        r = rng.random()
        if depth > 4 or r < 0.5:
            c = rng.random()
            if c < 0.3:
                return "".join(rng.choice(self.POOL) for _ in range(rng.randint(0, 8)))
            if c < 0.5:
                return rng.randint(-2 ** 63, 2 ** 63 - 1)
            if c < 0.8:
                d = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
                return d if math.isfinite(d) else 0.5
            if c < 0.9:
                return rng.choice([True, False])
            return None
        if r < 0.75:
            return [self.value(rng, depth + 1) for _ in range(rng.randint(1, 5))]
        return {("k%d" % rng.randint(0, 99)): self.value(rng, depth + 1) for _ in range(rng.randint(1, 5))}

    def same(self, a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            self.assertEqual(sorted(a), sorted(b), path)
            for k in a:
                self.same(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list):
            self.assertEqual(len(a), len(b), path)
            for i, (x, y) in enumerate(zip(a, b)):
                self.same(x, y, f"{path}[{i}]")
        elif isinstance(a, float) and a.is_integer() and -2 ** 63 <= a < 2 ** 63:
            self.assertEqual((int, int(a)), (type(b), b), path)  # a whole float reads as an integer
        else:
            self.assertEqual((type(a), a), (type(b), b), path)

    def test_random_documents_round_trip(self):
        rng = random.Random(20261127)
        docs = [json.dumps({"v": self.value(rng)}, ensure_ascii=rng.random() < 0.5) for _ in range(1500)]
        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "round_trip.lua")
            with open(script, "w", encoding="utf-8") as f:
                f.write("local docs = {\n")
                for doc in docs:
                    f.write("[==[" + doc + "]==],\n")
                f.write("}\nfor _, d in ipairs(docs) do print(sluice.json.encode(sluice.json.decode(d))) end\n")
            proc = subprocess.run([pgfixture.sluice_bin(), "--home", d, "exec", script],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.split("\n")
        self.assertEqual(len(lines), len(docs) + 1)
        for i, (doc, line) in enumerate(zip(docs, lines)):
            self.same(json.loads(doc)["v"], json.loads(line)["v"], f"doc {i}")



if __name__ == "__main__":
    harness.main()
