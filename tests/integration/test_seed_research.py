#!/usr/bin/env python3
"""The research job types of the seed — reddit_scrape and amazon_review_scrape —
with their service clients (lua/sluice/apify.lua, llm.lua), domain tables
(schema/010_research.sql) and the competitors CLI, against the loopback services
fixture (tests/fixtures/services.py: Apify, the LLM) and a real Postgres.

Expected numbers are computed from the fixture's own generators and scoring
function (svc_actors.reddit_items, svc_llm.llm_score, svc_llm.extract_quotes,
svc_actors.amazon_items), never copied from a run. Only 127.0.0.1 is contacted;
every wait is bounded.
"""

import json
import re
import os
import shlex
import signal
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

sys.path.insert(0, harness.FIXTURES)
import svc_actors  # noqa: E402
import svc_llm  # noqa: E402
from fixture_client import Fixture  # noqa: E402

SEED = 7
HANDLERS = os.path.join(harness.SOURCE, "handlers")
REDDIT_ACTOR = "fatihtahta~reddit-scraper-search-fast"
AMAZON_ACTOR = "axesso_data~amazon-reviews-scraper"

REDDIT_DEFAULTS = {
    "timeframe": "month", "max_posts": 500, "min_upvotes": 20, "min_comments": 5,
    "relevance_threshold": 0.6, "signal_threshold": 0.5, "top_percentile": 0.2,
    "auto_sync_to_persona": False,
}
AMAZON_DEFAULTS = {"asin": "Unknown", "include_keywords": True, "include_helpful": True}
KEYWORDS = ["great", "good", "love", "amazing", "excellent", "perfect", "works", "helpful", "happy",
            "recommend", "bad", "terrible", "awful", "broke", "waste", "refund", "disappointed",
            "quality", "price", "value", "smell", "taste"]


# ---------------------------------------------------------------- expectations

def reddit_expected(params):
    """What the pipeline must produce for params, from the fixture's generators."""
    p = dict(REDDIT_DEFAULTS, **params)
    inp = {"queries": p["search_queries"], "maxPosts": p["max_posts"], "sort": "relevance",
           "timeframe": p["timeframe"], "includeNsfw": False, "scrapeComments": True, "maxComments": 50}
    subs = p.get("subreddits") or []
    if subs:
        inp["subredditName"] = subs[0]
        if len(subs) > 1:
            inp["subredditKeywords"] = subs[1:]
    items, _ = svc_actors.reddit_items(SEED, inp)
    posts = [i for i in items if i["kind"] == "post"]
    comments = [i for i in items if i["kind"] == "comment"]

    def text(post):
        return post.get("body") or post.get("selftext") or ""

    def score(stage, post):
        return svc_llm.llm_score(SEED, stage, post["title"], text(post)[:500])

    engaged = [x for x in posts if x["score"] >= p["min_upvotes"] and x["num_comments"] >= p["min_comments"]]
    rel = {x["id"]: score("relevance", x) for x in engaged}
    relevant = [x for x in engaged if rel[x["id"]] >= p["relevance_threshold"]]
    sig = {x["id"]: score("signal", x) for x in relevant}
    signal_ = [x for x in relevant if sig[x["id"]] >= p["signal_threshold"]]
    intent = {x["id"]: score("intent", x) for x in signal_}
    combined = {x["id"]: 0.4 * rel[x["id"]] + 0.3 * sig[x["id"]] + 0.3 * intent[x["id"]] for x in signal_}
    order = {x["id"]: i for i, x in enumerate(posts)}
    ranked = sorted(signal_, key=lambda x: (-combined[x["id"]], order[x["id"]]))
    top = ranked[:max(1, int(len(ranked) * p["top_percentile"]))] if ranked else []
    quotes = set()
    for b in range(0, len(top), 5):
        batch = [{"index": b + j, "title": x["title"], "body": text(x)[:1500]}
                 for j, x in enumerate(top[b:b + 5])]
        for cat, lst in svc_llm.extract_quotes(SEED, batch).items():
            for q in lst:
                quotes.add((top[q["post_index"]]["id"], cat, q["quote"]))
    return {
        "items": len(items), "posts": posts, "comments": len(comments), "engaged": engaged,
        "relevant": relevant, "signal": signal_, "top": top, "quotes": quotes,
        "scores": {"relevance": rel, "signal": sig, "intent": intent},
    }


def amazon_configs(asin, domain, keywords=True, helpful=True):
    base = {"asin": asin, "domainCode": domain, "maxPages": 10, "reviewerType": "all_reviews",
            "mediaType": "all_contents", "formatType": "current_format"}
    out = [dict(base, sortBy="recent")]
    out += [dict(base, sortBy="recent", filterByStar=s)
            for s in ("five_star", "four_star", "three_star", "two_star", "one_star")]
    if keywords:
        out += [dict(base, sortBy="recent", filterByKeyword=k) for k in KEYWORDS]
    if helpful:
        out += [dict(base, sortBy="helpful"), dict(base, sortBy="helpful", filterByStar="five_star"),
                dict(base, sortBy="helpful", filterByStar="one_star")]
    return out


def amazon_expected(configs):
    items, _ = svc_actors.amazon_items(SEED, {"input": configs})
    ids = {i["reviewId"] for i in items if i.get("reviewId")}
    return len(items), ids


# ---------------------------------------------------------------- the tests

class Research(harness.SluiceTest):
    handlers = [HANDLERS]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.svc = Fixture("services.py", "--seed", str(SEED), "--apify-run-seconds", "0.2")

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        # the domain tables live in public and outlive the sluice schema the harness
        # drops: start from an empty public schema too (the next command migrates)
        harness.pgfixture.psql(self.db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        self.svc.reset()

    def env(self, extra=None, db=True):
        env = super().env(db=db)
        for k in list(env):
            if k.startswith(("APIFY_", "LLM_", "META_")) or "proxy" in k.lower():
                del env[k]
        env.update({
            "APIFY_BASE_URL": self.svc.url, "APIFY_TOKEN": "test-apify-token",
            "LLM_BASE_URL": self.svc.url + "/v1", "LLM_API_KEY": "test-llm-key",
            "LLM_MODEL": "fixture-model",
        })
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    # -------------------------------------------------------------- helpers

    def run_fg(self, job_type, params, brand=None, env=None):
        """`sluice run TYPE --params … --json` → (outcome dict, CompletedProcess)."""
        args = ["run", job_type, "--json", "--params", json.dumps(params)]
        if brand:
            args += ["--brand", brand]
        proc = self.sluice(*args, env=env, check=False)
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"sluice run printed no outcome:\n{proc.stdout}{proc.stderr}")
        return out, proc

    def queue(self, job_type, params, brand=None, *extra):
        args = ["queue", job_type, "--params", json.dumps(params), *extra]
        if brand:
            args += ["--brand", brand]
        return self.sluice(*args).stdout.strip()

    def job(self, job_id):
        return self.one(f"SELECT * FROM sluice.scheduled_jobs WHERE id = '{job_id}'")

    def runs_of(self, job_id):
        return self.sql(f"SELECT * FROM sluice.scheduled_job_runs WHERE scheduled_job_id = '{job_id}' "
                        f"ORDER BY attempt_number")

    def wait_job(self, job_id, statuses=("completed", "failed"), timeout=90):
        self.wait_for(lambda: self.job(job_id)["status"] in statuses, timeout,
                      f"job {job_id} did not reach {statuses}")
        return self.job(job_id)

    def started(self, actor):
        return self.svc.stats()["apify_runs_started"].get(actor, 0)

    def competitor_url(self, brand="Acme", asin="B0TESTASIN", domain="com"):
        self.sluice("brands", "add", brand)
        comp = self.sluice("competitors", "add", "--brand", brand, f"Rival of {brand}").stdout.strip()
        host = "www.amazon." + domain
        return self.sluice("competitors", "add-amazon-url", comp,
                           f"https://{host}/Some-Product/dp/{asin}/ref=sr_1_1?th=1").stdout.strip()

    # -------------------------------------------------------------- parameters

    def test_parameter_defaults_and_registry(self):
        # queueing syncs the registry; queued jobs carry the defaults
        job = self.queue("reddit_scrape", {"search_queries": ["dry skin"]})
        self.assertEqual(self.job(job)["parameters"], dict(REDDIT_DEFAULTS, search_queries=["dry skin"]))
        rows = {r["name"]: r for r in self.sql(
            "SELECT name, label, emoji, brand_rule, default_params, param_schema FROM sluice.job_types "
            "WHERE name IN ('reddit_scrape', 'amazon_review_scrape')")}
        self.assertEqual(rows["reddit_scrape"]["default_params"], REDDIT_DEFAULTS)
        self.assertEqual(rows["reddit_scrape"]["brand_rule"], "optional")
        self.assertEqual((rows["reddit_scrape"]["label"], rows["reddit_scrape"]["emoji"]), ("Reddit Scrape", "🔍"))
        self.assertEqual(set(rows["reddit_scrape"]["param_schema"]),
                         {"search_queries", "subreddits", "timeframe", "max_posts", "min_upvotes",
                          "min_comments", "relevance_threshold", "signal_threshold", "top_percentile",
                          "persona_id", "auto_sync_to_persona", "persona_context", "topic_context"})
        self.assertEqual(rows["amazon_review_scrape"]["default_params"], AMAZON_DEFAULTS)
        self.assertEqual(rows["amazon_review_scrape"]["brand_rule"], "required")
        self.assertEqual(set(rows["amazon_review_scrape"]["param_schema"]),
                         {"competitor_amazon_url_id", "asin", "include_keywords", "include_helpful"})
        ds = {r["dataset_key"]: r for r in self.sql("SELECT * FROM sluice.datasets")}
        self.assertEqual(ds["reddit_data"]["max_age_seconds"], 7 * 86400)
        self.assertEqual(ds["amazon_reviews"]["max_age_seconds"], 7 * 86400)

    def test_reddit_validation_errors(self):
        cases = [
            ({}, "search_queries: is required"),
            ({"search_queries": []}, "search_queries: must have at least 1 item, got 0"),
            ({"search_queries": ["a", 5]}, "search_queries[2]: must be a string"),
            ({"search_queries": ["a"], "relevance_threshold": 1.5}, "relevance_threshold: must be at most 1"),
            ({"search_queries": ["a"], "signal_threshold": -0.1}, "signal_threshold: must be at least 0"),
            ({"search_queries": ["a"], "top_percentile": 0}, "top_percentile: must be greater than 0"),
            ({"search_queries": ["a"], "top_percentile": 1.01}, "top_percentile: must be at most 1"),
            ({"search_queries": ["a"], "timeframe": "weekly"}, "timeframe: must be one of hour, day"),
            ({"search_queries": ["a"], "max_posts": "ten"}, "max_posts: must be an integer"),
            ({"search_queries": ["a"], "min_upvotes": -1}, "min_upvotes: must be at least 0"),
            ({"search_queries": ["a"], "persona_id": "abc"}, "persona_id: must be a uuid"),
            ({"search_queries": ["a"], "auto_sync_to_persona": "yes"}, "auto_sync_to_persona: must be a boolean"),
            ({"search_queries": ["a"], "max_post": 10}, "unknown parameter 'max_post' — did you mean 'max_posts'?"),
        ]
        for params, message in cases:
            with self.subTest(params=params):
                proc = self.sluice("queue", "reddit_scrape", "--params", json.dumps(params), check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(message, proc.stderr)
        # the boundaries themselves are accepted: thresholds 0 and 1, percentile 1
        self.queue("reddit_scrape", {"search_queries": ["a"], "relevance_threshold": 0,
                                     "signal_threshold": 1, "top_percentile": 1})
        self.assertEqual(self.count("sluice.scheduled_jobs"), 1)

    def test_amazon_validation_errors(self):
        self.sluice("brands", "add", "Acme")
        cases = [
            ({}, "competitor_amazon_url_id: is required"),
            ({"competitor_amazon_url_id": "not-a-uuid"}, "competitor_amazon_url_id: must be a uuid"),
            ({"competitor_amazon_url_id": str(uuid.uuid4()), "include_keywords": "yes"},
             "include_keywords: must be a boolean"),
            ({"competitor_amazon_url_id": str(uuid.uuid4()), "include_helpful": 1},
             "include_helpful: must be a boolean"),
        ]
        for params, message in cases:
            with self.subTest(params=params):
                proc = self.sluice("queue", "amazon_review_scrape", "--brand", "Acme",
                                   "--params", json.dumps(params), check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(message, proc.stderr)
        proc = self.sluice("queue", "amazon_review_scrape", "--params",
                           json.dumps({"competitor_amazon_url_id": str(uuid.uuid4())}), check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("needs a brand", proc.stderr)
        self.assertEqual(self.count("sluice.scheduled_jobs"), 0)

    # -------------------------------------------------------------- reddit

    def test_reddit_pipeline_stage_arithmetic_without_brand(self):
        params = {"search_queries": ["standing desk", "back pain"], "max_posts": 150,
                  "relevance_threshold": 0.5, "signal_threshold": 0.4, "top_percentile": 0.3,
                  "persona_context": "remote workers", "topic_context": "ergonomics"}
        exp = reddit_expected(params)
        self.assertGreaterEqual(len(exp["top"]), 2, "the chosen parameters should keep a few posts")
        out, proc = self.run_fg("reddit_scrape", params)  # no brand: the seed's legacy direct mode
        self.assertEqual(out["status"], "completed", proc.stderr)
        res = out["result"]
        self.assertEqual(res["posts_scraped"], len(exp["posts"]))
        self.assertEqual(res["comments_scraped"], exp["comments"])
        self.assertEqual(res["posts_after_engagement"], len(exp["engaged"]))
        self.assertEqual(res["posts_after_relevance"], len(exp["relevant"]))
        self.assertEqual(res["posts_after_signal"], len(exp["signal"]))
        self.assertEqual(res["posts_top_selected"], len(exp["top"]))
        self.assertEqual(res["quotes_extracted"], len(exp["quotes"]))
        self.assertEqual(res["llm_parse_errors"], 0)
        self.assertAlmostEqual(res["apify_cost_estimate"], exp["items"] * 1.5 / 1000, places=6)

        run = self.one("SELECT * FROM public.reddit_scrape_runs")
        self.assertEqual(run["status"], "completed")
        self.assertIsNone(run["brand_id"])
        self.assertEqual(run["search_queries"], params["search_queries"])
        for col, key in (("posts_scraped", "posts"), ("posts_after_engagement", "engaged"),
                         ("posts_after_relevance", "relevant"), ("posts_after_signal", "signal"),
                         ("posts_top_selected", "top")):
            self.assertEqual(run[col], len(exp[key]), col)
        self.assertEqual(run["quotes_extracted"], len(exp["quotes"]))
        self.assertIsNotNone(run["completed_at"])

        # each stage's count is in the run's log
        logs = self.one("SELECT logs FROM sluice.scheduled_job_runs")["logs"]
        self.assertIn(f"engagement filter (score >= 20 and comments >= 5): {len(exp['engaged'])} of "
                      f"{len(exp['posts'])} posts kept", logs)
        self.assertIn(f"relevance (>= 0.5): {len(exp['relevant'])} of {len(exp['engaged'])} posts kept", logs)
        self.assertIn(f"signal (>= 0.4): {len(exp['signal'])} of {len(exp['relevant'])} posts kept", logs)
        self.assertIn(f"top 30%: {len(exp['top'])} of {len(exp['signal'])} posts selected", logs)

        # posts: the engaged ones, with the fixture's scores; the top ones selected
        posts = {r["reddit_id"]: r for r in self.sql("SELECT * FROM public.reddit_posts")}
        self.assertEqual(set(posts), {x["id"] for x in exp["engaged"]})
        for stage in ("relevance", "signal", "intent"):
            for pid, s in exp["scores"][stage].items():
                self.assertAlmostEqual(posts[pid][stage + "_score"], s, places=9, msg=f"{stage} {pid}")
        self.assertEqual({k for k, r in posts.items() if r["selected"]}, {x["id"] for x in exp["top"]})
        self.assertTrue(all(r["created_utc"] for r in posts.values()), "every created_utc format parses")

        # quotes: exactly the fixture's extraction of the selected posts
        rows = self.sql("SELECT p.reddit_id, q.sentiment_category, q.quote_text, q.confidence_score, "
                        "q.source_type FROM public.reddit_sentiment_quotes q "
                        "JOIN public.reddit_posts p ON p.id = q.post_id")
        self.assertEqual({(r["reddit_id"], r["sentiment_category"], r["quote_text"]) for r in rows},
                         exp["quotes"])
        self.assertTrue(all(0 <= r["confidence_score"] <= 1 and r["source_type"] for r in rows))

        # freshness of the platform-level (no brand) reddit_data row
        ds = self.one("SELECT * FROM sluice.dataset_status WHERE dataset_key = 'reddit_data'")
        self.assertIsNone(ds["brand_id"])
        self.assertEqual(ds["last_status"], "completed")

        # the LLM saw the persona and topic and the marked stages, in JSON mode
        calls = self.svc.log("/v1/chat/completions")
        self.assertTrue(calls)
        self.assertLessEqual(calls[0]["body_len"], 4096)  # logged whole
        body = json.loads(calls[0]["body"])
        self.assertEqual(body["response_format"], {"type": "json_object"})
        self.assertIn("remote workers", json.dumps(body["messages"]))
        self.assertTrue(all(c["headers"].get("authorization") == "Bearer test-llm-key" for c in calls))
        stats = self.svc.stats()
        self.assertEqual(stats["apify_runs_started"], {REDDIT_ACTOR: 1})
        self.assertEqual(stats["llm_calls"]["extract"], (len(exp["top"]) + 4) // 5)
        self.assertEqual(stats["llm_calls"]["relevance"], (len(exp["engaged"]) + 9) // 10)
        # the Apify token travelled in the Authorization header only
        for entry in self.svc.log("/v2/"):
            self.assertEqual(entry["headers"].get("authorization"), "Bearer test-apify-token")
            self.assertNotIn("token", entry["query"])

    def test_reddit_bad_post_is_cleaned_or_skipped_not_fatal(self):
        # a NUL in one post's body (Postgres refuses it in text and jsonb) and a
        # score past the integer column in another: each failed the whole batch of
        # posts, on every retry. The NUL is removed; the post the database still
        # refuses is skipped, logged with its id, and counted
        params = {"search_queries": ["standing desk"], "max_posts": 150, "relevance_threshold": 0.5,
                  "signal_threshold": 0.4, "top_percentile": 0.3}
        exp = reddit_expected(params)
        nul, huge = exp["engaged"][0]["id"], exp["engaged"][1]["id"]
        self.svc.control({"apify_patch_items": [
            {"actor": REDDIT_ACTOR, "match": {"kind": "post", "id": nul},
             "set": {"body": "Sleep\u0000 better", "title": "\u0000Title"}},
            {"actor": REDDIT_ACTOR, "match": {"kind": "post", "id": huge}, "set": {"score": 10 ** 12}},
        ]})
        self.sluice("brands", "add", "Acme")
        out, proc = self.run_fg("reddit_scrape", params, "Acme")
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        self.assertEqual(out["result"]["rows_skipped"], 1)
        posts = {r["reddit_id"]: r for r in self.sql("SELECT reddit_id, title, body FROM public.reddit_posts")}
        self.assertEqual(set(posts), {x["id"] for x in exp["engaged"]} - {huge})
        self.assertEqual((posts[nul]["title"], posts[nul]["body"]), ("Title", "Sleep better"))
        self.assertEqual(out["result"]["records"], len(exp["engaged"]) - 1)
        logs = self.one("SELECT logs FROM sluice.scheduled_job_runs")["logs"]
        self.assertIn(f"post {nul}: NUL characters removed from 2 texts", logs)
        self.assertIn(f'reddit_posts: post {huge} skipped, the database refused it: value "1000000000000" '
                      f'is out of range for type integer (22003)', logs)
        ds = self.one("SELECT * FROM sluice.dataset_status WHERE dataset_key = 'reddit_data'")
        self.assertEqual((ds["last_status"], ds["metadata"]["rows_skipped"]), ("completed", 1))
        self.assertEqual(self.one("SELECT status FROM public.reddit_scrape_runs")["status"], "completed")

    def test_reddit_created_utc_out_of_range_or_in_milliseconds_is_not_fatal(self):
        # created_utc 1e20 raised in os.date and failed the run on every retry;
        # one in milliseconds made a year Postgres refuses, and the post was lost
        params = {"search_queries": ["standing desk"], "max_posts": 150, "relevance_threshold": 0.5,
                  "signal_threshold": 0.4, "top_percentile": 0.3}
        exp = reddit_expected(params)
        huge, millis = exp["engaged"][0], exp["engaged"][1]
        self.svc.control({"apify_patch_items": [
            {"actor": REDDIT_ACTOR, "match": {"kind": "post", "id": huge["id"]}, "set": {"created_utc": 1e20}},
            {"actor": REDDIT_ACTOR, "match": {"kind": "post", "id": millis["id"]},
             "set": {"created_utc": 1733011200123}},
        ]})
        out, proc = self.run_fg("reddit_scrape", params)
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        self.assertEqual(out["result"]["rows_skipped"], 0)
        posts = {r["reddit_id"]: r for r in self.sql(
            "SELECT reddit_id, extract(epoch FROM created_utc)::bigint AS created FROM public.reddit_posts")}
        self.assertEqual(set(posts), {x["id"] for x in exp["engaged"]})
        self.assertIsNone(posts[huge["id"]]["created"])
        self.assertEqual(posts[millis["id"]]["created"], 1733011200)
        logs = self.one("SELECT logs FROM sluice.scheduled_job_runs")["logs"]
        self.assertIn(f"post {huge['id']}: created_utc left empty: 1e+20 is not a unix time", logs)
        self.assertIn(f"post {millis['id']}: created_utc 1733011200123 read as milliseconds", logs)

    def test_reddit_quotes_equal_once_cleaned_are_stored_once(self):
        # a quote holding a NUL (the post's text had one) could not be
        # checkpointed, and the run failed on every retry; two quotes of one post
        # that differ only by a NUL are one quote once it is removed
        params = {"search_queries": ["standing desk"], "max_posts": 10, "min_upvotes": 0, "min_comments": 0,
                  "relevance_threshold": 0, "signal_threshold": 0, "top_percentile": 1}
        exp = reddit_expected(params)
        post = exp["engaged"][0]["id"]
        self.svc.control({"apify_patch_items": [
            {"actor": REDDIT_ACTOR, "match": {"kind": "post", "id": post},
             "set": {"body": "I hate\u0000 standing all day. I hate standing all day\u0000."}},
        ]})
        out, proc = self.run_fg("reddit_scrape", params)
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        quotes = self.sql("SELECT q.quote_text FROM public.reddit_sentiment_quotes q "
                          f"JOIN public.reddit_posts p ON p.id = q.post_id WHERE p.reddit_id = '{post}' "
                          "AND q.sentiment_category = 'PAIN_POINT'")
        self.assertEqual([q["quote_text"] for q in quotes], ["I hate standing all day."])
        logs = self.one("SELECT logs FROM sluice.scheduled_job_runs")["logs"]
        self.assertIn(f"quote of post {post} (PAIN_POINT): NUL characters removed from 1 text\n", logs)

    def test_db_errors_carry_the_sqlstate(self):
        # sluice.db.query (and db.transaction) return nil, message, SQLSTATE: what
        # the writers' row-by-row fallback reads to tell bad data from a failure
        script = """
local _, e1, s1 = sluice.db.query("SELECT $1::int AS n", "3000000000")
local _, e2, s2 = sluice.db.query("SELECT 1/0")
local _, e3, s3 = sluice.db.transaction(function() return sluice.db.query("SELECT nope FROM nowhere") end)
local ok = sluice.db.query("SELECT 1 AS n")
print(s1, s2, s3, e1, select("#", sluice.db.query("SELECT 1")), ok[1].n)
"""
        out = self.sluice("exec", "-", input=script).stdout.strip().split("\t")
        self.assertEqual(out[:3], ["22003", "22012", "42P01"])
        self.assertIn("out of range for type integer", out[3])
        self.assertEqual(out[4:], ["1", "1"])

    def test_reddit_rerun_is_idempotent_and_persona_sync_has_no_duplicates(self):
        self.sluice("brands", "add", "Acme")
        persona = self.scalar("SELECT sluice.add_persona('Acme', 'Night-shift nurses', 'tired, on their feet')")
        params = {"search_queries": ["sleep"], "subreddits": ["sleep", "Parenting"], "max_posts": 120,
                  "relevance_threshold": 0.4, "signal_threshold": 0.3, "top_percentile": 0.5,
                  "persona_id": persona, "auto_sync_to_persona": True}
        exp = reddit_expected(params)
        self.assertGreater(len(exp["quotes"]), 3)
        first = self.queue("reddit_scrape", params, "Acme")
        with self.serve("--poll", "0.2"):
            self.assertEqual(self.wait_job(first)["status"], "completed")
            posts1 = self.count("public.reddit_posts")
            quotes1 = self.count("public.reddit_sentiment_quotes")
            persona1 = self.one(f"SELECT * FROM public.personas_4d WHERE id = '{persona}'")
            second = self.queue("reddit_scrape", params, "Acme")
            self.assertEqual(self.wait_job(second)["status"], "completed")
        self.assertEqual(posts1, len(exp["engaged"]))
        self.assertEqual(quotes1, len(exp["quotes"]))
        # a second run of the same research adds no posts, quotes or persona entries
        self.assertEqual(self.count("public.reddit_posts"), posts1)
        self.assertEqual(self.count("public.reddit_sentiment_quotes"), quotes1)
        persona2 = self.one(f"SELECT * FROM public.personas_4d WHERE id = '{persona}'")
        fields = ("pain_points", "outcomes_jtbd", "buying_objections", "failed_solutions",
                  "desired_features", "familiar_promises")
        for f in fields:
            self.assertEqual(persona2[f], persona1[f], f)

        # the persona holds each distinct quote once, in its category's field
        def texts(cat):
            return {q for (_, c, q) in exp["quotes"] if c == cat}
        for cat, field in (("PAIN_POINT", "pain_points"), ("DESIRED_OUTCOME", "outcomes_jtbd"),
                           ("BUYING_OBJECTION", "buying_objections")):
            values = [q for sub in ("emotional", "social", "functional") for q in persona2[field][sub]]
            self.assertEqual(sorted(values), sorted(texts(cat)), field)
        for cat, field in (("FAILED_SOLUTION", "failed_solutions"), ("DESIRED_FEATURE", "desired_features"),
                           ("FAMILIAR_SOLUTION", "familiar_promises")):
            self.assertEqual(sorted(persona2[field]), sorted(texts(cat)), field)
        total = sum(len(texts(c)) for c in svc_llm.CATEGORIES)
        runs = self.sql("SELECT quotes_synced, brand_id, persona_id FROM public.reddit_scrape_runs "
                        "ORDER BY created_at")
        self.assertEqual([r["quotes_synced"] for r in runs], [total, 0])
        self.assertTrue(all(r["persona_id"] == persona and r["brand_id"] for r in runs))
        self.assertEqual(self.count("public.reddit_sentiment_quotes", "NOT synced_to_persona"), 0)
        # the second job resumed nothing: it bought its own scrape
        self.assertEqual(self.started(REDDIT_ACTOR), 2)
        ds = self.one("SELECT d.last_status FROM sluice.dataset_status d JOIN sluice.brands b "
                      "ON b.id = d.brand_id WHERE b.name = 'Acme' AND d.dataset_key = 'reddit_data'")
        self.assertEqual(ds["last_status"], "completed")

    def test_reddit_persona_of_another_brand_fails_before_anything_is_bought(self):
        self.sluice("brands", "add", "Acme")
        self.sluice("brands", "add", "B2")
        persona = self.scalar("SELECT sluice.add_persona('B2', 'Their persona', 'not Acme''s')")
        before = self.one(f"SELECT * FROM public.personas_4d WHERE id = '{persona}'")
        params = {"search_queries": ["sleep"], "max_posts": 50, "persona_id": persona,
                  "auto_sync_to_persona": True}
        job = self.queue("reddit_scrape", params, "Acme")
        with self.serve("--poll", "0.2"):
            self.assertEqual(self.wait_job(job)["status"], "failed")
        self.assertEqual(len(self.runs_of(job)), 1, "a foreign persona is not retried")
        self.assertIn(f"persona Their persona ({persona}) belongs to another brand", self.job(job)["last_error"])
        # a job without a brand may not write into a brand's persona either
        out, _ = self.run_fg("reddit_scrape", params)
        self.assertEqual(out["status"], "failed")
        self.assertIn(f"({persona}) belongs to a brand, this job has none", out["error"])
        # nor a brand's job into a persona without a brand
        shared = self.scalar("SELECT sluice.add_persona(NULL, 'Shared persona')")
        out, _ = self.run_fg("reddit_scrape", dict(params, persona_id=shared), brand="Acme")
        self.assertEqual(out["status"], "failed")
        self.assertIn(f"persona Shared persona ({shared}) has no brand, this job has one", out["error"])
        # checked before the scrape or the LLM was paid for, and nothing was written
        self.assertEqual(self.svc.stats()["apify_runs_started"], {})
        self.assertEqual(self.svc.log("/v1/"), [])
        self.assertEqual(self.count("public.reddit_scrape_runs"), 0)
        self.assertEqual(self.one(f"SELECT * FROM public.personas_4d WHERE id = '{persona}'"), before)
        # nor was any freshness touched: no reddit_data was worked on
        self.assertEqual(self.count("sluice.dataset_status"), 0)

    def test_reddit_unparseable_reply_scores_zero_and_short_reply_pads(self):
        params = {"search_queries": ["standing desk"], "max_posts": 100, "relevance_threshold": 0.3}
        exp = reddit_expected(params)
        first_batch = [x["id"] for x in exp["engaged"][:10]]
        self.assertEqual(len(first_batch), 10)
        env = self.env({"LLM_CONCURRENCY": "1"})  # batches in order: the switches hit the first one
        # the first relevance batch: 3 unparseable replies (all its attempts)
        self.svc.control({"llm_malformed": 3})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "completed", proc.stderr)
        self.assertEqual(out["result"]["llm_parse_errors"], 1)
        rows = {r["reddit_id"]: r for r in self.sql("SELECT reddit_id, relevance_score, relevance_reasoning "
                                                    "FROM public.reddit_posts")}
        for pid in first_batch:
            self.assertEqual((rows[pid]["relevance_score"], rows[pid]["relevance_reasoning"]), (0, "Parse error"))
        kept = [x for x in exp["relevant"] if x["id"] not in first_batch]
        self.assertEqual(out["result"]["posts_after_relevance"], len(kept))
        logs = self.sql("SELECT logs FROM sluice.scheduled_job_runs")[0]["logs"]
        self.assertIn("asking again", logs)
        self.assertIn("could not be parsed", logs)

        def calls_made():
            return sum(self.svc.stats()["llm_calls"].values())
        # every call made is counted, the re-asks of an unusable reply too
        self.assertEqual(out["result"]["llm_calls"], calls_made())
        run = self.one(f"SELECT llm_calls FROM public.reddit_scrape_runs WHERE id = '{out['result']['run_id']}'")
        self.assertEqual(run["llm_calls"], calls_made())

        # one malformed reply is asked again and changes nothing
        self.svc.reset()
        self.svc.control({"llm_malformed": 1})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "completed", proc.stderr)
        self.assertEqual(out["result"]["posts_after_relevance"], len(exp["relevant"]))
        self.assertEqual(out["result"]["llm_parse_errors"], 0)
        self.assertEqual(out["result"]["llm_calls"], calls_made())

        # a reply one element short: the last post of that batch scores 0
        self.svc.reset()
        self.svc.control({"llm_short": 1})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "completed", proc.stderr)
        last = self.one(f"SELECT relevance_score, relevance_reasoning FROM public.reddit_posts "
                        f"WHERE reddit_id = '{first_batch[-1]}'")
        self.assertEqual((last["relevance_score"], last["relevance_reasoning"]), (0, "Missing score"))

        # every reply unparseable: the run fails with a clear error instead of "no relevant posts"
        self.svc.reset()
        self.svc.control({"llm_malformed": 1000})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "failed")
        self.assertIn("none of the", out["error"])
        self.assertIn("relevance replies could be parsed", out["error"])
        self.assertEqual(self.one("SELECT status FROM public.reddit_scrape_runs ORDER BY created_at DESC "
                                  "LIMIT 1")["status"], "failed")

    def test_reddit_reply_without_content_is_counted_and_asked_again(self):
        # a 200 whose message content is null was paid for: it counts, and is
        # asked again like a reply that does not parse (it used to fail the batch
        # at once, uncounted)
        params = {"search_queries": ["standing desk"], "max_posts": 100, "relevance_threshold": 0.3}
        exp = reddit_expected(params)
        first_batch = [x["id"] for x in exp["engaged"][:10]]
        env = self.env({"LLM_CONCURRENCY": "1"})  # batches in order: the switches hit the first one

        def calls_made():
            return sum(self.svc.stats()["llm_calls"].values())
        self.svc.control({"llm_no_content": 1})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "completed", proc.stderr)
        self.assertEqual(out["result"]["llm_parse_errors"], 0)
        self.assertEqual(out["result"]["posts_after_relevance"], len(exp["relevant"]))
        self.assertEqual(out["result"]["llm_calls"], calls_made())
        logs = self.sql("SELECT logs FROM sluice.scheduled_job_runs")[0]["logs"]
        self.assertIn("no text content", logs)
        self.assertIn("asking again", logs)

        # every attempt of the first batch without content: the documented parse failure
        self.svc.reset()
        self.svc.control({"llm_no_content": 3})
        out, proc = self.run_fg("reddit_scrape", params, env=env)
        self.assertEqual(out["status"], "completed", proc.stderr)
        self.assertEqual(out["result"]["llm_parse_errors"], 1)
        self.assertEqual(out["result"]["llm_calls"], calls_made())
        rows = {r["reddit_id"]: r for r in self.sql("SELECT reddit_id, relevance_score, relevance_reasoning "
                                                    "FROM public.reddit_posts")}
        for pid in first_batch:
            self.assertEqual((rows[pid]["relevance_score"], rows[pid]["relevance_reasoning"]), (0, "Parse error"))

    def test_llm_429_storm_honours_retry_after(self):
        params = {"search_queries": ["standing desk"], "max_posts": 100, "relevance_threshold": 0.3}
        exp = reddit_expected(params)
        self.svc.control({"status_429": [
            {"path_prefix": "/v1/chat/completions", "count": 6, "retry_after": 1},
            {"path_prefix": "/v2/actor-runs", "count": 2},
        ]})
        out, proc = self.run_fg("reddit_scrape", params)
        self.assertEqual(out["status"], "completed", proc.stderr)
        self.assertEqual(out["result"]["posts_after_relevance"], len(exp["relevant"]))
        self.assertEqual(out["result"]["posts_top_selected"], len(exp["top"]))
        calls = self.svc.log("/v1/chat/completions")
        limited = [c for c in calls if c["status"] == 429]
        self.assertEqual(len(limited), 6)
        for c in limited:  # the same request again, no sooner than Retry-After
            again = [d for d in calls if d["body"] == c["body"] and d["t"] > c["t"]]
            self.assertTrue(again, "a rate-limited request was not retried")
            self.assertGreaterEqual(again[0]["t"] - c["t_end"], 0.95)
        self.assertEqual(len([c for c in self.svc.log("/v2/actor-runs") if c["status"] == 429]), 2)
        self.assertEqual(self.started(REDDIT_ACTOR), 1)
        # each retry's log line names the request it repeats
        logs = self.one(f"SELECT logs FROM sluice.scheduled_job_runs WHERE id = '{out['run_id']}'")["logs"]
        retries = [line.split(" ", 1)[1] for line in logs.splitlines() if " retry " in line]
        self.assertEqual(len(retries), 8, logs)
        llm = f"llm: POST {self.svc.url}/v1/chat/completions: retry "
        self.assertEqual(len([r for r in retries if r.startswith(llm)]), 6, retries)
        self.assertEqual(len([r for r in retries if re.match(r"apify: GET /v2/actor-runs/\w+: retry [23]/6 ", r)]), 2,
                         retries)

    def test_missing_credentials_fail_at_once_without_retries(self):
        for missing, var in (("APIFY_TOKEN", "APIFY_TOKEN"), ("LLM_API_KEY", "LLM_API_KEY")):
            with self.subTest(missing=missing):
                self.svc.reset()
                env = self.env({missing: None})
                out, proc = self.run_fg("reddit_scrape", {"search_queries": ["x"]}, env=env)
                self.assertEqual(out["status"], "failed")
                self.assertIn(f"{var} is not set", out["error"])
                # at once: before any request (nothing waited on a service or its retries)
                self.assertEqual(self.svc.stats()["requests"], 0, "nothing may be bought without both keys")
        # queued: one attempt, no retry
        job = self.queue("reddit_scrape", {"search_queries": ["x"]})
        with self.serve("--poll", "0.2", env=self.env({"APIFY_TOKEN": None})):
            self.assertEqual(self.wait_job(job)["status"], "failed")
        self.assertEqual(len(self.runs_of(job)), 1)
        self.assertIn("APIFY_TOKEN is not set", self.job(job)["last_error"])
        # the amazon job too
        url = self.competitor_url()
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url},
                             env=self.env({"APIFY_TOKEN": None}))
        self.assertEqual(out["status"], "failed")
        self.assertIn("APIFY_TOKEN is not set", out["error"])
        # a refused token is permanent too
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url},
                             env=self.env({"APIFY_TOKEN": "bad-token"}))
        self.assertEqual(out["status"], "failed")
        self.assertIn("APIFY_TOKEN was refused", out["error"])
        # a refused LLM key fails the reddit job before the scrape is bought
        self.svc.reset()
        out, _ = self.run_fg("reddit_scrape", {"search_queries": ["x"]}, env=self.env({"LLM_API_KEY": "bad-token"}))
        self.assertEqual((out["status"], out["job_status"]), ("failed", "failed"))
        self.assertIn("HTTP 401", out["error"])
        self.assertIn("check LLM_API_KEY", out["error"])
        self.assertEqual(self.started(REDDIT_ACTOR), 0, "nothing may be bought with a refused LLM key")

    def test_a_base_url_that_is_no_url_fails_at_once_without_retries(self):
        # it failed every request as a transport error: retried in the client
        # for seconds, then by the job's retry policy, as if the service were down
        for var, value, example in (("APIFY_BASE_URL", "api.apify.com", "https://api.apify.com"),
                                    ("LLM_BASE_URL", "ftp://llm.example/v1", "https://api.openai.com/v1")):
            with self.subTest(var=var):
                self.svc.reset()
                out, _ = self.run_fg("reddit_scrape", {"search_queries": ["x"]}, env=self.env({var: value}))
                self.assertEqual((out["status"], out["job_status"]), ("failed", "failed"))
                self.assertEqual(out["error"], f'{var} must be an http(s) URL such as {example}, not "{value}"')
                self.assertEqual(self.svc.stats()["requests"], 0)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 2)

    def test_actor_failed_is_a_clear_error_and_a_new_run_on_retry(self):
        self.svc.control({"apify_fail_actor": REDDIT_ACTOR})
        job = self.queue("reddit_scrape", {"search_queries": ["x"]}, None, "--max-retries", "1")
        with self.serve("--poll", "0.2"):
            self.wait_for(lambda: len(self.runs_of(job)) == 1 and self.runs_of(job)[0]["status"] == "failed",
                          60, "first attempt did not fail")
            self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}'; "
                        f"SELECT pg_notify('sluice_jobs', '')")
            self.assertEqual(self.wait_job(job)["status"], "failed")
        runs = self.runs_of(job)
        self.assertEqual([r["status"] for r in runs], ["failed", "failed"])
        self.assertIn("ended FAILED: The Actor process was terminated", runs[0]["error_message"])
        # a FAILED run is not polled again: each attempt bought a new one
        self.assertEqual(self.started(REDDIT_ACTOR), 2)
        run = self.one("SELECT status, error FROM public.reddit_scrape_runs")
        self.assertEqual(run["status"], "failed")
        self.assertIn("scraping: apify:", run["error"])

    def test_actor_aborted_and_timed_out(self):
        self.svc.control({"apify_abort": {"actor": REDDIT_ACTOR, "count": 1}})
        out, _ = self.run_fg("reddit_scrape", {"search_queries": ["x"]})
        self.assertEqual(out["status"], "failed")
        self.assertIn("was ABORTED: Run was aborted", out["error"])
        # someone stopped it on purpose: no retry is scheduled
        self.assertEqual(self.job(out["job_id"])["status"], "failed")
        self.svc.control({"apify_timeout": REDDIT_ACTOR})
        out, _ = self.run_fg("reddit_scrape", {"search_queries": ["x"]})
        self.assertEqual(out["status"], "failed")
        self.assertIn("ended TIMED-OUT", out["error"])
        # worth another try: the job is due again (with a new run, the old one is marked failed)
        job = self.job(out["job_id"])
        self.assertEqual(job["status"], "active")
        self.assertTrue(job["checkpoint"]["reddit_scrape"]["failed"])

    def test_env_reads_only_service_variables(self):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write('print(sluice.env("APIFY_TOKEN"), sluice.env("LLM_MODEL"), sluice.env("META_NOPE"))\n'
                    'print(pcall(sluice.env, "HOME"))\n')
        try:
            proc = self.sluice("exec", f.name, env=self.env({"META_NOPE": ""}, db=False))
        finally:
            os.unlink(f.name)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[0].split("\t"), ["test-apify-token", "fixture-model", "nil"])
        self.assertIn("false", lines[1])
        self.assertIn("'HOME' is not readable by handlers", lines[1])

    # -------------------------------------------------------------- amazon

    def test_amazon_scrape_counts_idempotent_rerun_and_history(self):
        url = self.competitor_url(asin="B0AMZTEST1", domain="co.uk")
        raw, ids = amazon_expected(amazon_configs("B0AMZTEST1", "co.uk"))
        other = self.sluice("competitors", "add-amazon-url", "Rival of Acme",
                            "https://www.amazon.com/gp/product/B0OTHER002").stdout.strip()
        first = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url, "asin": "B0AMZTEST1"}, "Acme")
        with self.serve("--poll", "0.2"):
            self.assertEqual(self.wait_job(first)["status"], "completed")
            second = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
            self.assertEqual(self.wait_job(second)["status"], "completed")
            third = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": other,
                                                        "include_keywords": False, "include_helpful": False},
                               "Acme")
            self.assertEqual(self.wait_job(third)["status"], "completed")
        res = self.runs_of(first)[0]["result"]
        self.assertEqual(res["configurations"], 31)
        self.assertEqual(res["raw_results"], raw)
        self.assertEqual(res["reviews"], len(ids))
        self.assertEqual(res["reviews_new"], len(ids))
        self.assertEqual(self.runs_of(second)[0]["result"]["reviews_new"], 0)
        stored = {r["review_id"] for r in self.sql(
            f"SELECT review_id FROM public.competitor_amazon_reviews WHERE competitor_amazon_url_id = '{url}'")}
        self.assertEqual(stored, ids)  # deduplicated by review id; items without one dropped
        row = self.one(f"SELECT * FROM public.competitor_amazon_urls WHERE id = '{url}'")
        self.assertEqual((row["asin"], row["domain_code"]), ("B0AMZTEST1", "co.uk"))
        self.assertEqual(row["total_reviews_scraped"], len(ids))
        self.assertAlmostEqual(float(row["scrape_cost_estimate"]), round(raw * 0.75 / 1000, 4), places=4)
        self.assertIsNotNone(row["last_scraped_at"])
        bad = self.count("public.competitor_amazon_reviews", "rating IS NOT NULL AND rating NOT BETWEEN 1 AND 5")
        self.assertEqual(bad, 0)
        self.assertGreater(self.count("public.competitor_amazon_reviews", "review_date IS NOT NULL"), 0)
        # the flags drop rows: 6 configurations
        raw6, ids6 = amazon_expected(amazon_configs("B0OTHER002", "com", False, False))
        res3 = self.runs_of(third)[0]["result"]
        self.assertEqual((res3["configurations"], res3["raw_results"], res3["reviews"]), (6, raw6, len(ids6)))
        # per-URL history (last 5), as the seed's page showed under each URL row
        hist = json.loads(self.sluice("runs", "--type", "amazon_review_scrape", "--param",
                                      f"competitor_amazon_url_id={url}", "--json").stdout)
        self.assertEqual({h["run_id"] for h in hist},
                         {self.runs_of(first)[0]["id"], self.runs_of(second)[0]["id"]})
        ds = self.one("SELECT d.last_status FROM sluice.dataset_status d JOIN sluice.brands b "
                      "ON b.id = d.brand_id WHERE b.name = 'Acme' AND d.dataset_key = 'amazon_reviews'")
        self.assertEqual(ds["last_status"], "completed")

    def test_reddit_output_without_posts_fails_instead_of_fresh_and_empty(self):
        # posts without an id (the actor's format changed) were 0 posts scraped:
        # completed, the research done and reddit_data fresh
        self.sluice("brands", "add", "Acme")
        self.svc.control({"apify_patch_items": {"actor": REDDIT_ACTOR, "match": {"kind": "post"},
                                                "set": {"id": None}}})
        out, _ = self.run_fg("reddit_scrape", {"search_queries": ["kettle"], "max_posts": 10}, brand="Acme")
        self.assertEqual(out["status"], "failed")
        self.assertRegex(out["error"], r"^no post among the \d+ items run \w+ returned \(\d+ comments, 10 items "
                                       r"without a post id\): its output cannot be read; the first item's keys: ")
        self.assertEqual(self.one(f"SELECT status, attempts FROM sluice.scheduled_jobs WHERE id = '{out['job_id']}'"),
                         {"status": "failed", "attempts": 0}, "the retry would read the same run: not retried")
        self.assertEqual(self.count("public.reddit_posts"), 0)
        self.assertEqual(self.svc.log("/v1/chat"), [], "nothing was asked of the LLM")
        run = self.one("SELECT status, current_step, error FROM public.reddit_scrape_runs")
        self.assertEqual((run["status"], run["current_step"]), ("failed", "scraping"))
        self.assertEqual(self.one("SELECT state FROM sluice.dataset_health WHERE brand_name = 'Acme' "
                                  "AND dataset_key = 'reddit_data'")["state"], "failing")

    def test_amazon_output_without_reviews_or_statuses_fails_instead_of_fresh_and_empty(self):
        # every item without a reviewId and without a statusCode (the actor's
        # format changed) was 0 reviews: completed, the product scraped and fresh
        url = self.competitor_url(asin="B0NOREVIEW")
        params = {"competitor_amazon_url_id": url, "include_keywords": False, "include_helpful": False}
        self.svc.control({"apify_patch_items": {"actor": AMAZON_ACTOR, "match": {}, "set": {"reviewId": None}}})
        out, _ = self.run_fg("amazon_review_scrape", params, brand="Acme")
        self.assertEqual(out["status"], "failed")
        self.assertRegex(out["error"], r"^none of the \d+ items run \w+ returned is a review \(no reviewId\) or "
                                       r"the actor's status answer \(statusCode\): its output cannot be read, "
                                       r"nothing was stored; the first item's keys: asin, author, ")
        self.assertEqual(self.one(f"SELECT status, attempts FROM sluice.scheduled_jobs WHERE id = '{out['job_id']}'"),
                         {"status": "failed", "attempts": 0}, "the retry would read the same run: not retried")
        self.assertEqual(self.count("public.competitor_amazon_reviews"), 0)
        row = self.one(f"SELECT last_scraped_at FROM public.competitor_amazon_urls WHERE id = '{url}'")
        self.assertIsNone(row["last_scraped_at"])
        self.assertEqual(self.one("SELECT state FROM sluice.dataset_health WHERE brand_name = 'Acme' "
                                  "AND dataset_key = 'amazon_reviews'")["state"], "failing")
        # the actor's own "no reviews" answers are a product without reviews: completed, 0
        self.svc.reset()
        self.svc.control({"apify_patch_items": {"actor": AMAZON_ACTOR, "match": {}, "set": {
            "reviewId": None, "statusCode": 404, "statusMessage": "NO_REVIEWS_FOUND"}}})
        out, _ = self.run_fg("amazon_review_scrape", params, brand="Acme")
        self.assertEqual(out["status"], "completed", out)
        self.assertEqual(out["result"]["reviews"], 0)
        self.assertEqual(self.one("SELECT state FROM sluice.dataset_health WHERE brand_name = 'Acme' "
                                  "AND dataset_key = 'amazon_reviews'")["state"], "fresh")

    def test_amazon_bad_items_are_cleaned_not_fatal(self):
        # one review text with a NUL (Postgres refuses it in text and jsonb), one
        # helpful-votes count past the integer column, one with separators: each
        # failed the whole batch, on every retry
        url = self.competitor_url(asin="B0BADITEM1")
        configs = amazon_configs("B0BADITEM1", "com")
        items, _ = svc_actors.amazon_items(SEED, {"input": configs})
        _, ids = amazon_expected(configs)
        reviews = sorted({i["reviewId"] for i in items if i.get("reviewId")})
        nul, huge, sep = reviews[:3]
        self.svc.control({"apify_patch_items": [
            {"actor": AMAZON_ACTOR, "match": {"reviewId": nul},
             "set": {"text": "Broke after\u0000 a week.", "title": "\u0000"}},
            {"actor": AMAZON_ACTOR, "match": {"reviewId": huge}, "set": {"numberOfHelpful": "3,000,000,000"}},
            {"actor": AMAZON_ACTOR, "match": {"reviewId": sep},
             "set": {"numberOfHelpful": "1,234 people found this helpful"}},
        ]})
        out, proc = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme",
                                env=self.env())
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        self.assertEqual(out["result"]["reviews"], len(ids))
        rows = {r["review_id"]: r for r in self.sql(
            "SELECT review_id, title, body, helpful_votes FROM public.competitor_amazon_reviews")}
        self.assertEqual(set(rows), ids)
        self.assertEqual((rows[nul]["body"], rows[nul]["title"]), ("Broke after a week.", None))
        self.assertIsNone(rows[huge]["helpful_votes"])
        self.assertEqual(rows[sep]["helpful_votes"], 1234)
        logs = self.one("SELECT logs FROM sluice.scheduled_job_runs")["logs"]
        self.assertIn(f"review {nul}: NUL characters removed from text, title", logs)
        self.assertIn(f"review {huge}: helpful votes left empty: 3,000,000,000 is out of range", logs)

    def test_amazon_verified_false_is_stored_as_false(self):
        # `verified` → verified_purchase: an unverified purchase is false, not
        # unknown (NULL)
        url = self.competitor_url(asin="B0VERIFIED")
        configs = amazon_configs("B0VERIFIED", "com", False, False)
        items, _ = svc_actors.amazon_items(SEED, {"input": configs})
        want = {}
        for i in items:
            if i.get("reviewId") and i["reviewId"] not in want:
                want[i["reviewId"]] = i["verified"]
        self.assertIn(False, want.values())
        out, proc = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url,
                                                         "include_keywords": False, "include_helpful": False},
                                "Acme", env=self.env())
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        got = {r["review_id"]: r["verified_purchase"] for r in self.sql(
            "SELECT review_id, verified_purchase FROM public.competitor_amazon_reviews")}
        self.assertEqual(got, want)

    def test_amazon_partial_failure_retry_reruns_only_failed_configs(self):
        url = self.competitor_url(asin="B0PARTIAL1")
        configs = amazon_configs("B0PARTIAL1", "com")
        _, all_ids = amazon_expected(configs)
        failing = [c for c in configs if c.get("filterByKeyword") in ("refund", "smell")]
        ok_configs = [c for c in configs if c not in failing]
        _, ok_ids = amazon_expected(ok_configs)
        self.svc.control({"amazon_fail_config": [{"filterByKeyword": "refund"}, {"filterByKeyword": "smell"}]})
        job = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        with self.serve("--poll", "0.2"):
            self.wait_for(lambda: self.runs_of(job) and self.runs_of(job)[0]["status"] == "failed", 60,
                          "the first attempt did not fail")
            first = self.runs_of(job)[0]
            self.assertIn("2 of 31 configurations failed (keyword:refund, keyword:smell)", first["error_message"])
            # the others' reviews are stored already
            self.assertEqual(self.count("public.competitor_amazon_reviews"), len(ok_ids))
            self.assertEqual(self.started(AMAZON_ACTOR), 1)
            self.svc.control({"amazon_fail_config": None})
            self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}'; "
                        f"SELECT pg_notify('sluice_jobs', '')")
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 2)
        starts = [e for e in self.svc.log("/v2/acts/") if e["method"] == "POST"]
        self.assertEqual(len(starts), 2)
        retried = json.loads(starts[1]["body"])["input"]
        self.assertEqual(sorted(c["filterByKeyword"] for c in retried), ["refund", "smell"])
        self.assertEqual({r["review_id"] for r in self.sql("SELECT review_id FROM public.competitor_amazon_reviews")},
                         all_ids)
        res = self.runs_of(job)[1]["result"]
        self.assertEqual(res["actor_runs"], 2)
        # each review once, though the retried configurations return many the
        # first round stored
        self.assertEqual((res["records"], res["reviews"], res["reviews_new"]),
                         (len(all_ids), len(all_ids), len(all_ids)))
        ds = self.one("SELECT records_affected FROM sluice.dataset_status WHERE dataset_key = 'amazon_reviews'")
        self.assertEqual(ds["records_affected"], len(all_ids))
        self.assertEqual(self.one(f"SELECT total_reviews_scraped FROM public.competitor_amazon_urls "
                                  f"WHERE id = '{url}'")["total_reviews_scraped"], len(all_ids))

    def test_amazon_reviews_new_counts_what_this_job_inserted_over_its_attempts(self):
        # the reviews are stored, then the checkpoint saying so is refused (the
        # worker could as well have died in between): the retry reads the same
        # run and writes the same reviews again, as updates now. They are still
        # new to the database for this job, and reviews_new must say so
        url = self.competitor_url(asin="B0NEWCOUNT")
        _, ids = amazon_expected(amazon_configs("B0NEWCOUNT", "com"))
        self.scalar("""CREATE SEQUENCE public.refusals;
            CREATE FUNCTION public.refuse_done() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.checkpoint -> 'amazon' -> 'done' <> '{}'::jsonb THEN
                    IF nextval('public.refusals') = 1 THEN RAISE EXCEPTION 'checkpoint refused'; END IF;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_done BEFORE UPDATE ON sluice.scheduled_jobs
                FOR EACH ROW EXECUTE FUNCTION public.refuse_done()""")
        job = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        with self.serve("--poll", "0.2"):
            self.wait_for(lambda: self.runs_of(job) and self.runs_of(job)[0]["status"] == "failed", 60,
                          "the first attempt did not fail")
            self.assertIn("checkpoint refused", self.runs_of(job)[0]["error_message"])
            self.assertEqual(self.reviews_of("B0NEWCOUNT"), len(ids))
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        res = self.runs_of(job)[1]["result"]
        self.assertEqual((res["reviews"], res["reviews_new"], res["reviews_total"]), (len(ids), len(ids), len(ids)))
        # a second job finds them all stored: none is new
        second = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        with self.serve("--poll", "0.2"):
            self.assertEqual(self.wait_job(second)["status"], "completed")
        res = self.runs_of(second)[0]["result"]
        self.assertEqual((res["reviews"], res["reviews_new"]), (len(ids), 0))

    def test_amazon_retry_resumes_the_paid_run(self):
        url = self.competitor_url(asin="B0RESUME01")
        _, ids = amazon_expected(amazon_configs("B0RESUME01", "com"))
        self.svc.control({"apify_run_seconds": 6})
        job = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        d = self.serve("--poll", "0.2", "--lease", "3")
        # kill the worker while it polls the run it started
        self.wait_for(lambda: ((self.job(job)["checkpoint"] or {}).get("amazon_run_1") or {}).get("run_id"), 30,
                      "the run id was never checkpointed")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        with self.serve("--poll", "0.2", "--lease", "3"):
            # the next daemon fails the lost run once its lease has run out; retry it now
            self.wait_for(lambda: self.runs_of(job)[0]["status"] == "failed", 60, "the lost run was not rescued")
            self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}' "
                        f"AND status = 'active' AND current_run_id IS NULL; SELECT pg_notify('sluice_jobs', '')")
            self.assertEqual(self.wait_job(job, timeout=90)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 1, "the retry bought the scrape again:\n" +
                         "\n".join(str(r["logs"]) for r in self.runs_of(job)))
        runs = self.runs_of(job)
        self.assertEqual(runs[-1]["status"], "completed")
        self.assertGreaterEqual(len(runs), 2)
        self.assertIn("resuming", runs[-1]["logs"])
        self.assertEqual(self.count("public.competitor_amazon_reviews"), len(ids))

    def quota_runs_out_once(self, params):
        """Queue a reddit job whose first LLM request is refused for quota, run
        it until it fails for good → (job id, the refused request's body)."""
        self.svc.control({"status_429": {"path_prefix": "/v1/chat/completions", "count": 1,
                                         "code": "insufficient_quota"}})
        job = self.queue("reddit_scrape", params)
        with self.serve("--poll", "0.2"):
            j = self.wait_job(job)
        self.assertEqual(j["status"], "failed")
        self.assertIn("llm: HTTP 429 insufficient_quota", j["last_error"])
        self.assertEqual(len(self.runs_of(job)), 1, "a quota error is not retried")
        refused = [c["body"] for c in self.svc.log("/v1/chat/completions") if c["status"] == 429]
        self.assertEqual(len(refused), 1)
        return job, refused[0]

    def test_a_failed_job_run_again_buys_nothing_twice(self):
        # the LLM quota runs out during the first stage: the job fails for good
        # (waiting cannot help), keeping its checkpoint: the scrape it paid for
        # and the answers the other batches of that stage got. Once the quota
        # is back, `jobs run-now` runs it again, and it asks for nothing twice
        params = {"search_queries": ["standing desk"], "max_posts": 100, "relevance_threshold": 0.3}
        exp = reddit_expected(params)
        job, refused = self.quota_runs_out_once(params)
        cp = self.job(job)["checkpoint"]
        self.assertTrue(cp["reddit_scrape"]["run_id"], cp)
        self.assertGreater(len(cp["reddit_llm"]["relevance"]), 0, "the answers the stage got were not kept")
        with self.serve("--poll", "0.2"):
            self.sluice("jobs", "run-now", job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        # run again, a failed job counts its attempts afresh: in the order they ran
        runs = sorted(self.runs_of(job), key=lambda r: r["started_at"])
        self.assertEqual([r["status"] for r in runs], ["failed", "completed"])
        self.assertIn("resuming", runs[1]["logs"])
        self.assertEqual(self.started(REDDIT_ACTOR), 1, "running the job again bought the scrape again")
        def canon(body):  # the same request, whatever order its keys (and its posts' keys) were written in
            req = json.loads(body)
            for m in req["messages"]:
                head, sep, posts = m["content"].partition("POSTS:\n")
                if sep:
                    m["content"] = head + sep + json.dumps(json.loads(posts), sort_keys=True)
            return json.dumps(req, sort_keys=True)
        answered = [canon(c["body"]) for c in self.svc.log("/v1/chat/completions") if c["status"] == 200]
        self.assertEqual(len(answered), len(set(answered)), "a request answered before was sent again")
        self.assertIn(canon(refused), answered)
        res = self.job(job)
        self.assertEqual(res["checkpoint"], {}, "a completed job keeps no checkpoint")
        self.assertEqual(runs[1]["result"]["posts_after_relevance"], len(exp["relevant"]))

    def test_a_failed_job_run_again_after_its_paid_run_is_gone_starts_a_new_one(self):
        # days later Apify no longer has the run (deleted, or past its data
        # retention): the checkpoint cannot be read, so a new run is bought in
        # the same attempt instead of failing the job again for good
        params = {"search_queries": ["desk lamp"], "max_posts": 20}
        job, _ = self.quota_runs_out_once(params)
        run_id = self.job(job)["checkpoint"]["reddit_scrape"]["run_id"]
        status, _, _ = self.svc.json("DELETE", f"/v2/actor-runs/{run_id}",
                                     headers={"Authorization": "Bearer t"})
        self.assertEqual(status, 204)
        with self.serve("--poll", "0.2"):
            self.sluice("jobs", "run-now", job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        logs = max(self.runs_of(job), key=lambda r: r["started_at"])["logs"]
        self.assertIn(f"run {run_id}, started by an earlier attempt, is gone (apify: GET /v2/actor-runs/{run_id}: "
                      f"HTTP 404", logs)
        self.assertIn("apify: started " + REDDIT_ACTOR, logs)
        self.assertEqual(self.started(REDDIT_ACTOR), 2)

    # -------------------------------------------------------------- lost start requests

    def retry_now(self, job):
        """Make a job whose run failed due now (its retry delay is 30 s) and wake the workers."""
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() WHERE id = '{job}' "
                    f"AND status = 'active' AND current_run_id IS NULL; SELECT pg_notify('sluice_jobs', '')")

    def amazon_job_runs(self, asin, brand="Acme"):
        """(review ids the fixture gives for the ASIN, a competitor_amazon_urls id of the brand)"""
        return amazon_expected(amazon_configs(asin, "com"))[1], self.competitor_url(brand=brand, asin=asin)

    def reviews_of(self, asin):
        return self.count("public.competitor_amazon_reviews", f"asin = '{asin}'")

    def test_lost_start_answer_retry_adopts_the_run_it_created(self):
        # the start request creates the run and then gets no answer: the client
        # times out (APIFY_START_TIMEOUT=1); the lookup right after fails too
        # (three 500s), so the attempt fails retryably without starting a run,
        # and the retry finds the run by its input and adopts it
        ids, url = self.amazon_job_runs("B0LOST0001")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "seconds": 30},
                          "status_500": {"path_prefix": f"/v2/acts/{AMAZON_ACTOR}/runs", "method": "GET",
                                         "count": 3}})
        env = self.env({"APIFY_START_TIMEOUT": "1"})
        job = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        with self.serve("--poll", "0.2", env=env):
            self.wait_for(lambda: self.runs_of(job) and self.runs_of(job)[0]["status"] == "failed", 60,
                          "the first attempt did not fail")
            first = self.runs_of(job)[0]
            self.assertIn("timed out after 1s", first["error_message"])
            self.assertIn("looking for the run it may have created failed too", first["error_message"])
            self.assertIn("the retry looks again before starting one", first["error_message"])
            self.assertEqual(self.started(AMAZON_ACTOR), 1)
            cp = self.job(job)["checkpoint"]["amazon_run_1"]
            self.assertNotIn("run_id", cp)
            self.assertIn("timed out", cp["start"]["lost"])
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        runs = self.runs_of(job)
        self.assertEqual([r["status"] for r in runs], ["failed", "completed"])
        self.assertEqual(self.started(AMAZON_ACTOR), 1, "the retry bought the scrape again:\n" + runs[-1]["logs"])
        self.assertIn("resuming Apify run", runs[-1]["logs"])
        self.assertIn("started by an earlier attempt whose start request timed out", runs[-1]["logs"])
        self.assertEqual(self.reviews_of("B0LOST0001"), len(ids))
        # the lookup: one list of runs (after the three 500s) and one INPUT read
        lists = [e for e in self.svc.log(f"/v2/acts/{AMAZON_ACTOR}/runs") if e["method"] == "GET"]
        self.assertEqual([e["status"] for e in lists], [500, 500, 500, 200])
        self.assertEqual(len(self.svc.log("/v2/key-value-stores/")), 1)

    def test_lost_start_answer_adopted_in_the_same_attempt(self):
        # the lookup right after the timeout finds the run: no retry needed
        ids, url = self.amazon_job_runs("B0LOST0002")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "seconds": 30}})
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme",
                             env=self.env({"APIFY_START_TIMEOUT": "1"}))
        self.assertEqual(out["status"], "completed", out.get("error"))
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        logs = self.runs_of(out["job_id"])[0]["logs"]
        self.assertIn("timed out after 1s; looking for the run it may have created", logs)
        self.assertIn("resuming Apify run", logs)
        self.assertEqual(self.reviews_of("B0LOST0002"), len(ids))
        # an ordinary start makes no lookup at all
        self.svc.reset()
        _, url3 = self.amazon_job_runs("B0LOST0003", brand="Other")
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url3}, "Other")
        self.assertEqual(out["status"], "completed", out.get("error"))
        self.assertEqual([e for e in self.svc.log(f"/v2/acts/{AMAZON_ACTOR}/runs") if e["method"] == "GET"], [])
        self.assertEqual(self.svc.log("/v2/key-value-stores/"), [])

    def test_start_answered_by_a_gateway_error_is_not_sent_again(self):
        # a 502 from a proxy in front of Apify may come after the run was created:
        # the start is not repeated; the run it created is found and adopted
        ids, url = self.amazon_job_runs("B0LOST0GW1")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "mode": "gateway"}})
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        self.assertEqual(out["status"], "completed", out.get("error"))
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        self.assertEqual(len([e for e in self.svc.log(f"/v2/acts/{AMAZON_ACTOR}/runs") if e["method"] == "POST"]), 1)
        logs = self.runs_of(out["job_id"])[0]["logs"]
        self.assertIn("HTTP 502", logs)
        self.assertIn("resuming Apify run", logs)
        self.assertEqual(self.reviews_of("B0LOST0GW1"), len(ids))

    def test_start_lost_before_the_run_was_created_retry_starts_one_run(self):
        # the connection drops before Apify acted (no run): nothing is found right
        # after, nor by the retry, which then starts exactly one run
        ids, url = self.amazon_job_runs("B0LOST0004")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "create": False,
                                               "mode": "drop"}})
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        self.assertEqual(out["status"], "failed")
        self.assertEqual(out["job_status"], "active")
        self.assertIn("empty reply from server", out["error"])
        self.assertIn("no run with this input has appeared", out["error"])
        self.assertEqual(self.started(AMAZON_ACTOR), 0)
        # the POST was sent once: a dropped connection is not a reason to send it again
        self.assertEqual(len([e for e in self.svc.log(f"/v2/acts/{AMAZON_ACTOR}/runs") if e["method"] == "POST"]), 1)
        job = out["job_id"]
        with self.serve("--poll", "0.2"):
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        logs = self.runs_of(job)[-1]["logs"]
        self.assertNotIn("resuming", logs)
        self.assertIn("apify: started " + AMAZON_ACTOR, logs)
        self.assertEqual(self.reviews_of("B0LOST0004"), len(ids))

    def test_lost_start_does_not_adopt_another_jobs_run_with_other_input(self):
        # job A's start is lost after creating its run (and the lookup fails);
        # job B, another ASIN on the same actor, then starts a newer run. A's
        # retry sees B's run first (newest first) but adopts only its own.
        ids_a, url_a = self.amazon_job_runs("B0LOSTAAAA")
        ids_b, url_b = self.amazon_job_runs("B0LOSTBBBB", brand="Beta")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "seconds": 30},
                          "status_500": {"path_prefix": f"/v2/acts/{AMAZON_ACTOR}/runs", "method": "GET",
                                         "count": 3}})
        # only A's start is meant to time out: B's and the retry's keep the
        # default, so that a slow machine does not lose them too
        env = self.env({"APIFY_START_TIMEOUT": "1"})
        out_a, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_a}, "Acme", env=env)
        self.assertEqual((out_a["status"], out_a["job_status"]), ("failed", "active"), out_a.get("error"))
        out_b, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_b}, "Beta")
        self.assertEqual(out_b["status"], "completed", out_b.get("error"))
        self.assertEqual(self.started(AMAZON_ACTOR), 2)
        st, _, listed = self.svc.json("GET", f"/v2/acts/{AMAZON_ACTOR}/runs?desc=1&limit=2",
                                      headers={"Authorization": "Bearer t"})
        run_b, run_a = [i["id"] for i in listed["data"]["items"]]
        self.assertIn(run_b, self.runs_of(out_b["job_id"])[0]["logs"])
        job = out_a["job_id"]
        with self.serve("--poll", "0.2"):
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 2, "job A bought its scrape again")
        logs = self.runs_of(job)[-1]["logs"]
        self.assertIn(f"resuming Apify run {run_a} ", logs)
        self.assertNotIn(run_b, logs)
        self.assertEqual(self.reviews_of("B0LOSTAAAA"), len(ids_a))
        self.assertEqual(self.reviews_of("B0LOSTBBBB"), len(ids_b))

    def lost_before_created(self, url, brand):
        """Run the job of `url` in the foreground with its start request dropped before
        Apify created anything; it must fail retryably, having found no run to adopt."""
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "create": False,
                                               "mode": "drop"}})
        out, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url}, brand)
        self.assertEqual((out["status"], out["job_status"]), ("failed", "active"), out.get("error"))
        self.assertIn("no run with this input has appeared", out["error"])
        return out["job_id"]

    def test_lost_start_does_not_adopt_another_jobs_aborted_run(self):
        # job B scrapes the same ASIN (the same input) and its run is ABORTED;
        # then job A's start is lost before Apify acted. B's run is recent and
        # has A's input, but a run that ended ABORTED is never adopted: A fails
        # retryably and its retry starts a run of its own
        ids, url_a = self.amazon_job_runs("B0LOSTABRT")
        _, url_b = self.amazon_job_runs("B0LOSTABRT", brand="Beta")
        self.svc.control({"apify_abort": {"actor": AMAZON_ACTOR, "count": 1}})
        out_b, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_b}, "Beta")
        self.assertIn("was ABORTED", out_b.get("error") or "")
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        job = self.lost_before_created(url_a, "Acme")
        self.assertNotIn("resuming", self.runs_of(job)[0]["logs"])
        with self.serve("--poll", "0.2"):
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 2)
        logs = self.runs_of(job)[-1]["logs"]
        self.assertNotIn("resuming", logs)
        self.assertIn("apify: started " + AMAZON_ACTOR, logs)
        self.assertEqual(self.count("public.competitor_amazon_reviews",
                                    f"competitor_amazon_url_id = '{url_a}'"), len(ids))

    def test_lost_start_does_not_adopt_a_run_another_job_checkpointed(self):
        # job B's run of the same input SUCCEEDED, but two of its configurations
        # failed, so B awaits its retry with the run checkpointed. Job A's start
        # is then lost before Apify acted: B's run is B's, not adopted (A would
        # take B's results, and B's failed configurations with them)
        ids, url_a = self.amazon_job_runs("B0LOSTOWND")
        _, url_b = self.amazon_job_runs("B0LOSTOWND", brand="Beta")
        self.svc.control({"amazon_fail_config": [{"filterByKeyword": "refund"}, {"filterByKeyword": "smell"}]})
        out_b, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_b}, "Beta")
        self.assertEqual((out_b["status"], out_b["job_status"]), ("failed", "active"), out_b.get("error"))
        run_b = self.job(out_b["job_id"])["checkpoint"]["amazon_run_1"]
        self.assertEqual(run_b["status"], "SUCCEEDED")
        self.svc.control({"amazon_fail_config": None})
        # B's retry is not for this test to run
        self.scalar(f"UPDATE sluice.scheduled_jobs SET next_run_at = now() + interval '1 hour' "
                    f"WHERE id = '{out_b['job_id']}' RETURNING 1")
        job = self.lost_before_created(url_a, "Acme")
        first = self.runs_of(job)[0]["logs"]
        self.assertIn(f"run {run_b['run_id']} has this input but belongs to job {out_b['job_id']}: not adopted",
                      first)
        self.assertNotIn("resuming", first)
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        with self.serve("--poll", "0.2"):
            self.retry_now(job)
            self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 2)
        logs = self.runs_of(job)[-1]["logs"]
        # the retry looks again before starting, and passes B's run over again
        self.assertIn(f"run {run_b['run_id']} has this input but belongs to job", logs)
        self.assertNotIn("resuming", logs)
        self.assertIn("apify: started " + AMAZON_ACTOR, logs)
        self.assertEqual(self.count("public.competitor_amazon_reviews",
                                    f"competitor_amazon_url_id = '{url_a}'"), len(ids))

    def test_lost_start_adopts_a_finished_jobs_run_of_the_same_input(self):
        # job B scrapes an ASIN and completes (its checkpoint, the run's owner
        # mark, is cleared); job A, another brand's URL of the same ASIN (the
        # same input), then loses its start before Apify acted. B's run is
        # recent and has A's input: A adopts it. That buys nothing twice and
        # gives A what its own run would have (the same actor and input,
        # started moments before), so it is allowed: one run for both
        ids, url_a = self.amazon_job_runs("B0LOSTDONE")
        _, url_b = self.amazon_job_runs("B0LOSTDONE", brand="Beta")
        out_b, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_b}, "Beta")
        self.assertEqual(out_b["status"], "completed", out_b.get("error"))
        self.assertEqual(self.job(out_b["job_id"])["checkpoint"], {})
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 1, "create": False,
                                               "mode": "drop"}})
        out_a, _ = self.run_fg("amazon_review_scrape", {"competitor_amazon_url_id": url_a}, "Acme")
        self.assertEqual(out_a["status"], "completed", out_a.get("error"))
        self.assertEqual(self.started(AMAZON_ACTOR), 1)
        st, _, listed = self.svc.json("GET", f"/v2/acts/{AMAZON_ACTOR}/runs?desc=1&limit=1",
                                      headers={"Authorization": "Bearer t"})
        run_b = listed["data"]["items"][0]["id"]
        self.assertIn(f"resuming Apify run {run_b} ", self.runs_of(out_a["job_id"])[0]["logs"])
        for url in (url_a, url_b):
            self.assertEqual(self.count("public.competitor_amazon_reviews",
                                        f"competitor_amazon_url_id = '{url}'"), len(ids))
        self.assertEqual(out_a["result"]["reviews"], len(ids))

    def test_two_jobs_of_one_input_losing_their_starts_at_once_buy_nothing_more(self):
        # two brands' jobs of the same ASIN (the same input) start together and
        # both lose their start answers after Apify created both runs. Whichever
        # run each adopts — its own, the other's, or, when both search at once,
        # the same one — has its input: no run is started again and each job
        # stores every review. On a loaded machine a job may look before its own
        # start has created the run and find only the other job's, owned: that
        # attempt fails saying the retry looks again, and the retry adopts it
        ids, url_a = self.amazon_job_runs("B0LOSTBOTH")
        _, url_b = self.amazon_job_runs("B0LOSTBOTH", brand="Beta")
        self.svc.control({"apify_start_lost": {"actor": AMAZON_ACTOR, "count": 2, "seconds": 30}})
        env = self.env({"APIFY_START_TIMEOUT": "1"})
        job_a = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url_a}, "Acme")
        job_b = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url_b}, "Beta")
        with self.serve("--poll", "0.2", "--concurrency", "4", env=env):
            for job in (job_a, job_b):
                self.assertEqual(self.wait_job(job)["status"], "completed")
        self.assertEqual(self.started(AMAZON_ACTOR), 2)
        self.assertEqual(len([e for e in self.svc.log(f"/v2/acts/{AMAZON_ACTOR}/runs") if e["method"] == "POST"]), 2)
        for job, url in ((job_a, url_a), (job_b, url_b)):
            *early, last = self.runs_of(job)
            for run in early:
                self.assertEqual(run["status"], "failed")
                self.assertIn("no run with this input has appeared; the retry looks again",
                              run["error_message"])
            self.assertEqual(last["status"], "completed")
            self.assertIn("resuming Apify run", last["logs"])
            self.assertEqual(last["result"]["reviews"], len(ids))
            self.assertEqual(self.count("public.competitor_amazon_reviews",
                                        f"competitor_amazon_url_id = '{url}'"), len(ids))

    def test_amazon_unknown_url_and_foreign_brand_fail_permanently(self):
        missing = str(uuid.uuid4())
        self.sluice("brands", "add", "Acme")
        job = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": missing}, "Acme")
        url = self.competitor_url(brand="Other")
        foreign = self.queue("amazon_review_scrape", {"competitor_amazon_url_id": url}, "Acme")
        with self.serve("--poll", "0.2"):
            self.assertEqual(self.wait_job(job)["status"], "failed")
            self.assertEqual(self.wait_job(foreign)["status"], "failed")
        self.assertEqual(len(self.runs_of(job)), 1)
        self.assertIn(f"competitor_amazon_url_id {missing}: no such row", self.job(job)["last_error"])
        self.assertEqual(len(self.runs_of(foreign)), 1)
        self.assertIn("belongs to another brand", self.job(foreign)["last_error"])
        self.assertEqual(self.svc.stats()["apify_runs_started"], {})
        # Acme's reviews were not worked on: its freshness is not "failing"
        self.assertEqual(self.count("sluice.dataset_status"), 0)

    def test_amazon_run_without_a_brand_keeps_no_platform_freshness(self):
        # the reviews are the URL row's brand's: a run without --brand called a
        # platform amazon_reviews fresh that no platform scope has, and a failure
        # left it failing for good
        url = self.competitor_url(asin="B0NOBRAND1")
        params = {"competitor_amazon_url_id": url, "include_keywords": False, "include_helpful": False}
        out, proc = self.run_fg("amazon_review_scrape", params)
        self.assertEqual(out["status"], "completed", proc.stdout + proc.stderr)
        self.assertGreater(self.count("public.competitor_amazon_reviews"), 0)
        logs = self.one(f"SELECT logs FROM sluice.scheduled_job_runs WHERE id = '{out['run_id']}'")["logs"]
        self.assertIn("run without a brand: Acme's amazon_reviews freshness is left as it was", logs)
        self.svc.control({"apify_fail_actor": "*"})
        out, _ = self.run_fg("amazon_review_scrape", params)
        self.assertEqual(out["status"], "failed")
        self.assertEqual(self.count("sluice.dataset_status"), 0)
        # with the brand, the brand's own row is kept
        self.svc.control({"apify_fail_actor": None})
        out, _ = self.run_fg("amazon_review_scrape", params, brand="Acme")
        self.assertEqual(out["status"], "completed")
        self.assertEqual(self.sql("SELECT b.name, d.last_status FROM sluice.dataset_status d "
                                  "LEFT JOIN sluice.brands b ON b.id = d.brand_id"),
                         [{"name": "Acme", "last_status": "completed"}])

    # -------------------------------------------------------------- competitors

    def test_competitors_cli_and_sql(self):
        self.sluice("brands", "add", "Acme")
        cid = self.sluice("competitors", "add", "--brand", "Acme", "Rival Co", "--website",
                          "https://rival.example", "--amazon-url",
                          "https://smile.amazon.de/gp/product/b0lowercas").stdout.strip()
        again = self.sluice("competitors", "add", "--brand", "Acme", "Rival Co",
                            "--facebook-page-id", "12345").stdout.strip()
        self.assertEqual(cid, again)
        row = self.one(f"SELECT * FROM public.competitors WHERE id = '{cid}'")
        self.assertEqual((row["website_url"], row["facebook_page_id"]), ("https://rival.example", "12345"))
        urls = self.sql("SELECT asin, domain_code FROM public.competitor_amazon_urls")
        self.assertEqual(urls, [{"asin": "B0LOWERCAS", "domain_code": "de"}])
        u1 = self.sluice("competitors", "add-amazon-url", "Rival Co", "https://www.amazon.com/dp/B0SAME0001")
        u2 = self.sluice("competitors", "add-amazon-url", cid, "https://amazon.com/x/dp/B0SAME0001?psc=1")
        self.assertEqual(u1.stdout, u2.stdout)
        self.assertIn("ASIN B0SAME0001 on amazon.com", u1.stderr)
        for bad, msg in (("https://www.amazon.com/s?k=desk", "cannot find an ASIN"),
                         ("https://www.example.com/dp/B0SAME0001", "is not an Amazon URL")):
            proc = self.sluice("competitors", "add-amazon-url", "Rival Co", bad, check=False)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(msg, proc.stderr)
        proc = self.sluice("competitors", "add-amazon-url", "Nobody", "https://www.amazon.com/dp/B0SAME0001",
                           check=False)
        self.assertIn("unknown competitor 'Nobody'", proc.stderr)
        self.assertIn("known competitors: Rival Co", proc.stderr)
        out = self.sluice("competitors", "list", "--json").stdout
        self.assertNotIn('" :', out)  # the same compact JSON as every --json
        self.assertEqual(out.count("\n"), 1, out)  # one line, whatever the number of URLs
        listed = json.loads(out)
        self.assertEqual(len(listed), 1)
        self.assertEqual(sorted(u["asin"] for u in listed[0]["amazon_urls"]), ["B0LOWERCAS", "B0SAME0001"])
        text = self.sluice("competitors", "list", "--brand", "Acme").stdout
        self.assertIn("Rival Co", text)
        self.assertIn("B0SAME0001 amazon.com  0 reviews, last scraped never", text)
        # plain SQL works the same
        sql_id = self.scalar("SELECT sluice.add_competitor('Acme', 'SQL Rival')")
        self.assertRegex(sql_id, r"^[0-9a-f-]{36}$")
        self.assertRegex(self.scalar(
            f"SELECT sluice.add_competitor_amazon_url('{sql_id}'::uuid, 'https://www.amazon.co.jp/dp/B0JAPAN001')"),
            r"^[0-9a-f-]{36}$")
        proc = self.sluice("competitors", "add", "Nameless", check=False)
        self.assertEqual(proc.returncode, 2)
        # a field that cannot be what it names is refused, and nothing changes
        for opt, bad, msg in (("--website", "rival.example", "a website must be an http(s) URL, got 'rival.example'"),
                              ("--ad-library-url", "ftp://x", "an Ad Library URL must be an http(s) URL"),
                              ("--facebook-page-id", "https://facebook.com/rival",
                               "a Facebook page id is a number")):
            proc = self.sluice("competitors", "add", "--brand", "Acme", "Rival Co", opt, bad, check=False)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(msg, proc.stderr)
            self.assertEqual(self.one(f"SELECT * FROM public.competitors WHERE id = '{cid}'"), row)
        self.assertEqual(self.count("public.competitors"), 2)
        # a name is printed as show prints stored text: no control character reaches the terminal
        self.scalar("SELECT sluice.add_competitor('Acme', E'Loud\\x1b[31m Rival\\x07')")
        text = self.sluice("competitors", "list", "--brand", "Acme").stdout
        self.assertIn("Loud^[[31m Rival^G\n", text)
        self.assertEqual([c for c in text if ord(c) < 0x20 and c != "\n"], [], text)

    def test_competitors_bad_input_exits_2_and_hints_quote_for_the_shell(self):
        self.sluice("brands", "add", "O'Brien & Sons")
        self.sluice("brands", "add", "Acme")
        self.sluice("competitors", "add", "--brand", "O'Brien & Sons", "Rival")
        self.sluice("competitors", "add", "--brand", "Acme", "Rival")
        url = "https://www.amazon.com/dp/B0SAME0001"
        for args, msg in ((("add", "--brand", "Nope", "X"), "unknown brand 'Nope'"),
                          (("list", "--brand", "Nope"), "unknown brand 'Nope'"),
                          (("list", "--brand", "Nope", "--json"), "unknown brand 'Nope'"),
                          (("add-amazon-url", "Nobody", url), "unknown competitor 'Nobody'"),
                          (("add-amazon-url", "Rival", url), "competitor name 'Rival' is used by several brands"),
                          (("add-amazon-url", "Rival", url, "--brand", "Nope"), "unknown brand 'Nope'"),
                          (("add-amazon-url", "Rival", "https://www.example.com/dp/B0SAME0001", "--brand", "Acme"),
                           "is not an Amazon URL"),
                          (("add-amazon-url", "Rival", "https://www.amazon.com/s?k=desk", "--brand", "Acme"),
                           "cannot find an ASIN")):
            proc = self.sluice("competitors", *args, check=False)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stderr}")
            self.assertIn(msg, proc.stderr)
        self.assertEqual(self.count("public.competitor_amazon_urls"), 0)
        # the hint is a command a shell reads back with the brand intact
        proc = self.sluice("competitors", "add-amazon-url", "Rival", url, "--brand", "O'Brien & Sons")
        hint = next(l for l in proc.stderr.splitlines() if "sluice queue" in l)
        self.assertIn("--brand 'O'\\''Brien & Sons'", hint)
        words = shlex.split(hint)
        self.assertEqual(words[words.index("--brand") + 1], "O'Brien & Sons")
        self.assertEqual(json.loads(words[words.index("--params") + 1]),
                         {"competitor_amazon_url_id": proc.stdout.strip()})


if __name__ == "__main__":
    harness.main()
