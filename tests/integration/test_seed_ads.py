#!/usr/bin/env python3
"""The ad job types — competitor_scrape, template_scrape, asset_download,
meta_sync — against the loopback services fixture (Apify Ads Library actor,
Graph API, LLM, media CDN) and a real Postgres: parameter defaults and
validation, idempotent upserts, per-asset download failures, the
content-addressed asset store, meta_sync's fatal and non-fatal steps, paging,
throttling retries and the 100 requests/minute Graph limit.

Expected numbers come from the fixture's own generators (tests/fixtures), so
every count is exact. Only 127.0.0.1 is contacted; every wait is bounded.
"""

import hashlib
import json
import os
import subprocess
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pgfixture  # noqa: E402

sys.path.insert(0, harness.FIXTURES)
from fixture_client import Fixture  # noqa: E402
import svc_actors  # noqa: E402
import svc_graph  # noqa: E402
import svc_media  # noqa: E402

SEED = 7
HANDLERS = os.path.join(harness.SOURCE, "handlers")
BRAND = "Acme"
ACCOUNT = "act_4242424242"
ADLIB = "https://www.facebook.com/ads/library/?active_status=all&view_all_page_id=100200300400500&q=sleep"
SEARCH = "https://www.facebook.com/ads/library/?active_status=all&country=US&q=herbal%20tea"


def media_id(url):
    """http://127.0.0.1:P/media/img/abc__1.jpg?x → abc__1"""
    return os.path.splitext(os.path.basename(urlsplit(url).path))[0]


class SeedAds(harness.SluiceTest):
    handlers = [HANDLERS]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.svc = Fixture("services.py", "--seed", str(SEED), "--apify-run-seconds", "0.2")
        cls.tmp = tempfile.mkdtemp(prefix="sluice-ads-")
        cls.assets = os.path.join(cls.tmp, "assets")
        # a fast Graph limiter for most tests; test_rate_limit uses the built-in one
        cls.fast_config = os.path.join(cls.tmp, "fast.conf")
        with open(cls.fast_config, "w") as f:
            f.write("http_limit = meta_graph 6000/60s\n")

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        # the domain tables live in schema public: a clean one too
        pgfixture.psql(self.db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        self.svc.reset()
        shutil.rmtree(self.assets, ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def env(self, extra=None, db=True, fast=True):
        env = super().env(extra=None, db=db)
        env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
        env.pop("SLUICE_CONFIG", None)
        url = self.svc.url
        env.update({
            "APIFY_BASE_URL": url, "APIFY_TOKEN": "test-token",
            "LLM_BASE_URL": url + "/v1", "LLM_API_KEY": "test-key", "LLM_MODEL": "fixture-model",
            "META_GRAPH_URL": url + "/v21.0", "META_ACCESS_TOKEN": "system-token-123",
            "META_GRAPH_RETRY_DELAYS": "0.05,0.1,0.2",
            "SLUICE_ASSET_DIR": self.assets,
        })
        if fast:
            env["SLUICE_CONFIG"] = self.fast_config
        if extra:
            env.update(extra)
        return env

    def setup_brand(self, brand=BRAND, account=ACCOUNT):
        self.sluice("migrate")
        if not self.count("sluice.brands", f"name = '{brand}'"):
            self.sluice("brands", "add", brand)
        comp = self.scalar(f"SELECT sluice.add_competitor('{brand}', 'Rival', NULL, NULL, '{ADLIB}')")
        self.scalar(f"SELECT sluice.add_ad_account('{brand}', '{account}', 'Main account')")
        return comp

    def synced_image_ads(self):
        """Sets the brand up and syncs its ads without downloading: its image ads,
        [{meta_ad_id, url}] by id (url: the image the download would fetch)."""
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        return self.sql("SELECT DISTINCT meta_ad_id, coalesce(image_url, thumbnail_url) AS url "
                        "FROM public.meta_ads_performance WHERE NOT is_video ORDER BY meta_ad_id")

    def assert_sourceless_videos_marked(self):
        """Exactly the videos Graph gives no source for are not_downloadable, as
        no_source_url; returns how many there are."""
        videos = self.sql("SELECT DISTINCT meta_ad_id, meta_video_id FROM public.meta_ads_performance "
                          "WHERE is_video")
        no_source = set()
        for v in videos:
            status, _, body = self.svc.json("GET", f"/v21.0/{v['meta_video_id']}?fields=source",
                                            headers={"Authorization": "Bearer system-token-123"})
            self.assertEqual(status, 200)
            if "source" not in body:
                no_source.add(v["meta_ad_id"])
        marked = self.sql("SELECT * FROM public.meta_ad_assets WHERE status = 'not_downloadable'")
        self.assertEqual({r["meta_ad_id"] for r in marked}, no_source)
        for r in marked:
            self.assertEqual((r["asset_type"], r["not_downloadable_reason"]), ("video", "no_source_url"))
        return len(no_source)

    def run_job(self, job_type, params=None, brand=BRAND, env=None, ok=True):
        args = ["run", job_type, "--params", json.dumps(params or {})]
        if brand:
            args += ["--brand", brand]
        proc = self.sluice(*args, env=env or self.env(), check=False)
        out = proc.stdout + proc.stderr
        if ok:
            self.assertEqual(proc.returncode, 0, f"{job_type} failed:\n{out}")
            return json.loads(proc.stdout.strip().splitlines()[-1]), out
        self.assertNotEqual(proc.returncode, 0, f"{job_type} should have failed:\n{out}")
        return None, out

    def dataset(self, key, brand=BRAND):
        return self.one(f"""SELECT d.* FROM sluice.dataset_status d JOIN sluice.brands b ON b.id = d.brand_id
                            WHERE b.name = '{brand}' AND d.dataset_key = '{key}'""")

    def health(self, brand=BRAND):
        rows = self.sql(f"SELECT dataset_key, state FROM sluice.dataset_health WHERE brand_name = '{brand}'")
        return {r["dataset_key"]: r["state"] for r in rows}

    def queue_error(self, job_type, params, brand=BRAND):
        args = ["queue", job_type, "--params", json.dumps(params)]
        if brand:
            args += ["--brand", brand]
        proc = self.sluice(*args, check=False)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        return proc.stderr

    def fixture_ads(self, url, count=None):
        inp = {"urls": [{"url": url}]}
        if count:
            inp["count"] = count
        items, _ = svc_actors.fb_ad_items(SEED, inp, base_url=self.svc.url)
        return items

    def stored_files(self):
        out = {}
        for root, _, files in os.walk(self.assets):
            for name in files:
                path = os.path.join(root, name)
                out[os.path.relpath(path, self.assets)] = path
        return out

    def assert_store_consistent(self, table):
        """Every downloaded row points at a file whose bytes hash to its sha256 and name."""
        rows = self.sql(f"SELECT storage_path, sha256, file_size_bytes FROM public.{table} "
                        "WHERE status = 'downloaded'")
        files = self.stored_files()
        for r in rows:
            self.assertIn(r["storage_path"], files)
            with open(files[r["storage_path"]], "rb") as f:
                data = f.read()
            self.assertEqual(hashlib.sha256(data).hexdigest(), r["sha256"])
            self.assertEqual(len(data), r["file_size_bytes"])
            self.assertTrue(r["storage_path"].startswith(r["sha256"][:2] + "/" + r["sha256"] + "."))
        return rows

    def expected_insight_rows(self, since, until):
        ads = svc_graph.account_ads(SEED, ACCOUNT)
        info = [(ad, svc_graph.ad_object(SEED, ad["ad_id"], self.svc.url)["is_video"]) for ad in ads]
        return svc_graph.insight_rows(SEED, info, {
            "level": "ad", "time_increment": "1", "fields": "ad_id,spend",
            "time_range": json.dumps({"since": since, "until": until})})

    # -------------------------------------------------------------- registry

    def test_defaults_validation_and_datasets(self):
        comp = self.setup_brand()
        # defaults filled in at enqueue
        job = self.sluice("queue", "template_scrape", "--params", json.dumps({"search_url": SEARCH})).stdout.strip()
        params = self.one(f"SELECT parameters FROM sluice.scheduled_jobs WHERE id = '{job}'")["parameters"]
        self.assertEqual(params, {"search_url": SEARCH, "max_ads": 50, "images_only": True, "auto_queue": True})
        job = self.sluice("queue", "meta_sync", "--brand", BRAND).stdout.strip()
        params = self.one(f"SELECT parameters FROM sluice.scheduled_jobs WHERE id = '{job}'")["parameters"]
        self.assertEqual(params, {"days_back": 7, "download_max_videos": 20, "download_max_images": 40,
                                  "auto_classify": False})
        job = self.sluice("queue", "asset_download", "--brand", BRAND).stdout.strip()
        params = self.one(f"SELECT parameters FROM sluice.scheduled_jobs WHERE id = '{job}'")["parameters"]
        self.assertEqual(params, {"max_videos": 20, "max_images": 40})
        job = self.sluice("queue", "competitor_scrape", "--brand", BRAND, "--params",
                          json.dumps({"competitor_id": comp, "ad_library_url": ADLIB})).stdout.strip()
        params = self.one(f"SELECT parameters FROM sluice.scheduled_jobs WHERE id = '{job}'")["parameters"]
        self.assertEqual(params["max_ads"], 500)
        # validation: nothing queued, the field named
        n = self.count("sluice.scheduled_jobs")
        self.assertIn("competitor_id", self.queue_error("competitor_scrape", {"ad_library_url": ADLIB}))
        self.assertIn("competitor_id", self.queue_error("competitor_scrape",
                                                        {"competitor_id": "nope", "ad_library_url": ADLIB}))
        self.assertIn("ad_library_url", self.queue_error("competitor_scrape",
                                                         {"competitor_id": comp, "ad_library_url": "not a url"}))
        self.assertIn("search_url", self.queue_error("template_scrape", {"max_ads": 5}))
        self.assertIn("max_ads", self.queue_error("template_scrape", {"search_url": SEARCH, "max_ads": 0}))
        self.assertIn("images_only", self.queue_error("template_scrape", {"search_url": SEARCH, "images_only": "yes"}))
        self.assertIn("days_back", self.queue_error("meta_sync", {"days_back": 0}))
        self.assertIn("max_videos", self.queue_error("asset_download", {"max_videos": -1}))
        self.assertIn("brand", self.queue_error("meta_sync", {}, brand=None).lower())
        self.assertIn("brand", self.queue_error("asset_download", {}, brand=None).lower())
        self.assertEqual(self.count("sluice.scheduled_jobs"), n)
        # datasets and max ages; ad_assets kept by both types, declared alike
        ds = {r["dataset_key"]: r["max_age_seconds"] for r in self.sql("SELECT * FROM sluice.datasets")}
        self.assertEqual(ds["meta_ads_performance"], 24 * 3600)
        self.assertEqual(ds["ad_classifications"], 48 * 3600)
        self.assertEqual(ds["templates_scraped"], 168 * 3600)
        self.assertEqual(ds["competitor_ads"], 168 * 3600)
        self.assertEqual(ds["ad_thumbnails"], 24 * 3600)
        self.assertEqual(ds["ad_assets"], 48 * 3600)
        keepers = [r["job_type"] for r in self.sql(
            "SELECT job_type FROM sluice.job_type_datasets WHERE dataset_key = 'ad_assets' ORDER BY 1")]
        self.assertEqual(keepers, ["asset_download", "meta_sync"])
        types = {r["name"]: r for r in self.sql("SELECT name, emoji, brand_rule FROM sluice.job_types")}
        self.assertEqual(types["competitor_scrape"]["emoji"], "🕵️")
        self.assertEqual(types["template_scrape"]["emoji"], "📥")
        self.assertEqual(types["asset_download"]["emoji"], "📦")
        self.assertEqual(types["meta_sync"]["emoji"], "🔄")
        self.assertEqual(types["meta_sync"]["brand_rule"], "required")

    def test_add_ad_account_is_idempotent(self):
        self.setup_brand()
        a = self.scalar(f"SELECT sluice.add_ad_account('{BRAND}', '4242424242')")
        b = self.scalar(f"SELECT sluice.add_ad_account('{BRAND}', '{ACCOUNT}')")
        self.assertEqual(a, b)
        self.scalar(f"SELECT sluice.add_ad_account('{BRAND}', 'act_77', p_primary => true)")
        rows = self.sql("SELECT meta_ad_account_id, is_primary FROM public.brand_ad_accounts ORDER BY 1")
        self.assertEqual(rows, [{"meta_ad_account_id": ACCOUNT, "is_primary": False},
                                {"meta_ad_account_id": "act_77", "is_primary": True}])
        with self.assertRaisesRegex(RuntimeError, "'acct-1' is not a Meta ad account id"):
            pgfixture.psql(self.db, f"SELECT sluice.add_ad_account('{BRAND}', 'acct-1')")
        # another brand cannot take the account over (each brand's meta_sync took
        # the other's performance rows)
        self.sluice("brands", "add", "Other Brand")
        with self.assertRaisesRegex(RuntimeError, f"ad account act_77 is already linked to brand '{BRAND}'"):
            pgfixture.psql(self.db, "SELECT sluice.add_ad_account('Other Brand', '77')")
        self.assertEqual(self.count("public.brand_ad_accounts"), 2)
        # the one link can still be moved to another brand
        pgfixture.psql(self.db, "UPDATE public.brand_ad_accounts SET brand_id = "
                                "(SELECT id FROM sluice.brands WHERE name = 'Other Brand') "
                                "WHERE meta_ad_account_id = 'act_77'")
        self.assertEqual(self.count("public.brand_ad_accounts", "meta_ad_account_id = 'act_77'"), 1)

    # -------------------------------------------------------------- competitor_scrape

    def test_competitor_scrape_upserts(self):
        comp = self.setup_brand()
        expected = self.fixture_ads(ADLIB, 40)
        res, _ = self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB, "max_ads": 40})
        self.assertEqual(res["records"], len(expected))
        self.assertEqual(res["new"], len(expected))
        rows = self.sql("SELECT * FROM public.competitor_ads ORDER BY ad_archive_id")
        ids = sorted(a.get("ad_archive_id") or a.get("adArchiveID") for a in expected)
        self.assertEqual([r["ad_archive_id"] for r in rows], ids)
        self.assertTrue(all(r["page_name"] for r in rows), "page_name falls back to snapshot.page_name")
        self.assertTrue(all(r["competitor_id"] == comp for r in rows))
        self.assertTrue(all(r["ad_creative_body"] for r in rows))
        inactive = [r for r in rows if not r["is_active"]]
        self.assertTrue(inactive and all(r["stopped_running"] for r in inactive))
        # seen again: updated, not duplicated
        res, log = self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB, "max_ads": 40})
        self.assertEqual((res["new"], res["updated"]), (0, len(expected)))
        self.assertEqual(self.count("public.competitor_ads"), len(expected))
        self.assertEqual(self.scalar("SELECT DISTINCT times_seen FROM public.competitor_ads"), "2")
        c = self.one(f"SELECT ads_count, last_scraped_at FROM public.competitors WHERE id = '{comp}'")
        self.assertEqual(c["ads_count"], len(expected))
        self.assertIsNotNone(c["last_scraped_at"])
        self.assertEqual(self.dataset("competitor_ads")["last_status"], "completed")
        self.assertEqual(self.dataset("competitor_ads")["records_affected"], len(expected))
        self.assertEqual(self.svc.stats()["apify_runs_started"]["curious_coder~facebook-ads-library-scraper"], 2)
        # the actor got the seed's input
        run = [e for e in self.svc.log("/v2/acts/") if e["method"] == "POST"][0]
        self.assertEqual(json.loads(run["body"]), {"urls": [{"url": ADLIB}], "scrapeAdDetails": False,
                                                   "period": "", "count": 40})

    def test_ads_library_bad_items_are_cleaned_not_fatal(self):
        # one ad's start_date in milliseconds, one with dates no clock gives, a
        # NUL in one snapshot and a page like count past bigint: each failed (or
        # silently corrupted) the whole batch, on every retry
        comp = self.setup_brand()
        items = self.fixture_ads(ADLIB, 40)

        def key(it):
            return {k: it[k] for k in ("ad_archive_id", "adArchiveID") if k in it}

        def aid(it):
            return it.get("ad_archive_id") or it.get("adArchiveID")
        ms, far, nul = items[0], items[1], items[2]
        snap = json.loads(json.dumps(nul["snapshot"]))
        snap["body"]["text"] = "Sleep\u0000 better"
        snap["page_like_count"] = 10 ** 20
        actor = "curious_coder~facebook-ads-library-scraper"
        self.svc.control({"apify_patch_items": [
            {"actor": actor, "match": key(ms), "set": {"start_date": ms["start_date"] * 1000,
                                                       "end_date": ms["end_date"] * 1000, "is_active": False}},
            {"actor": actor, "match": key(far), "set": {"start_date": 10 ** 30, "end_date": -5}},
            {"actor": actor, "match": key(nul), "set": {"snapshot": snap}},
        ]})
        res, log = self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB,
                                                      "max_ads": 40})
        self.assertEqual(res["records"], len(items))
        rows = {r["ad_archive_id"]: r for r in self.sql(
            "SELECT ad_archive_id, started_running::text, stopped_running::text, ad_creative_body, "
            "snapshot_data FROM public.competitor_ads")}
        self.assertEqual(len(rows), len(items))
        day = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t))  # noqa: E731
        self.assertEqual((rows[aid(ms)]["started_running"], rows[aid(ms)]["stopped_running"]),
                         (day(ms["start_date"]), day(ms["end_date"])))
        self.assertIsNone(rows[aid(far)]["started_running"])
        self.assertEqual(rows[aid(nul)]["ad_creative_body"], "Sleep better")
        self.assertEqual(rows[aid(nul)]["snapshot_data"]["body"]["text"], "Sleep better")
        self.assertIn(f"ad {aid(ms)}: start_date {ms['start_date'] * 1000} read as milliseconds", log)
        self.assertIn(f"ad {aid(far)}: start_date left empty", log)
        self.assertIn(f"ad {aid(nul)}: NUL characters removed", log)
        # template_scrape reads the same items: facebook_ads takes them too
        res, log = self.run_job("template_scrape", {"search_url": ADLIB, "max_ads": 40, "images_only": False,
                                                    "auto_queue": False})
        self.assertEqual(res["records"], len(items))
        fa = {r["ad_archive_id"]: r for r in self.sql(
            "SELECT ad_archive_id, extract(epoch FROM start_date)::bigint AS s, page_like_count, ad_body "
            "FROM public.facebook_ads")}
        self.assertEqual(fa[aid(ms)]["s"], ms["start_date"])
        self.assertIsNone(fa[aid(far)]["s"])
        self.assertEqual((fa[aid(nul)]["ad_body"], fa[aid(nul)]["page_like_count"]), ("Sleep better", None))

    def test_records_are_the_rows_stored_not_the_rows_refused(self):
        # a deployment's constraint refuses one ad: the job completes, the ad is
        # skipped and counted in rows_skipped, and records (the run's and the
        # dataset's) are the rows actually stored
        comp = self.setup_brand()
        items = self.fixture_ads(ADLIB, 40)
        refused = items[3].get("ad_archive_id") or items[3].get("adArchiveID")
        for table in ("competitor_ads", "facebook_ads"):
            self.scalar(f"ALTER TABLE public.{table} ADD CONSTRAINT not_this_ad CHECK (ad_archive_id <> '{refused}')")
        res, log = self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB,
                                                      "max_ads": 40})
        self.assertEqual((res["records"], res["new"], res["rows_skipped"]), (len(items) - 1, len(items) - 1, 1))
        self.assertEqual(self.count("public.competitor_ads"), len(items) - 1)
        self.assertEqual(self.dataset("competitor_ads")["records_affected"], len(items) - 1)
        self.assertIn(f"competitor_ads: ad {refused} skipped, the database refused it", log)
        res, _ = self.run_job("template_scrape", {"search_url": ADLIB, "max_ads": 40, "images_only": False,
                                                  "auto_queue": False})
        self.assertEqual((res["records"], res["rows_skipped"]), (len(items) - 1, 1))
        self.assertEqual(self.dataset("templates_scraped")["records_affected"], len(items) - 1)
        # meta_sync step 3: a status the table refuses is not a status stored
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        ads = [r["meta_ad_id"] for r in self.sql("SELECT DISTINCT meta_ad_id FROM public.meta_ads_performance "
                                                 "ORDER BY meta_ad_id")]
        paused = ads[0]
        self.scalar("ALTER TABLE public.meta_ads_performance ADD CONSTRAINT not_paused "
                    f"CHECK (meta_ad_id <> '{paused}' OR ad_status <> 'PAUSED')")
        self.svc.control({"graph_ad_status": {paused: "PAUSED"}})
        res, log = self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        c = res["creatives"]
        self.assertEqual((c["read"], c["statuses_read"], c["statuses_failed"], c["rows_skipped"]),
                         (0, len(ads) - 1, 0, 1))
        self.assertIn(f"meta_ads_performance (statuses): ad {paused} skipped, the database refused it", log)
        ds = self.dataset("ad_thumbnails")
        self.assertEqual((ds["last_status"], ds["records_affected"]), ("completed", len(ads) - 1))

    def test_competitor_scrape_unknown_or_foreign_competitor_is_permanent(self):
        self.setup_brand()
        self.sluice("brands", "add", "Other")
        other = self.scalar(f"SELECT sluice.add_competitor('Other', 'Theirs', NULL, NULL, '{ADLIB}')")
        _, out = self.run_job("competitor_scrape", {"competitor_id": "00000000-0000-4000-8000-000000000000",
                                                    "ad_library_url": ADLIB}, ok=False)
        self.assertIn("does not exist", out)
        _, out = self.run_job("competitor_scrape", {"competitor_id": other, "ad_library_url": ADLIB}, ok=False)
        self.assertIn("belongs to another brand", out)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 2,
                         "permanent failures end the job without retries")
        self.assertEqual(self.svc.stats()["apify_runs_started"], {})
        # neither touched the brand's freshness: nothing of it was worked on
        self.assertEqual(self.count("sluice.dataset_status"), 0)

    def test_ads_library_output_without_ads_fails_instead_of_fresh_and_empty(self):
        # items without an ad archive id in either spelling (the actor's format
        # changed) were 0 ads: completed, the scrape done and its dataset fresh
        comp = self.setup_brand()
        self.svc.control({"apify_patch_items": {"actor": "curious_coder~facebook-ads-library-scraper", "match": {},
                                                "set": {"ad_archive_id": None, "adArchiveID": None}}})
        for job_type, params, brand in [
                ("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB, "max_ads": 5}, BRAND),
                ("template_scrape", {"search_url": SEARCH, "max_ads": 5}, None)]:
            _, out = self.run_job(job_type, params, brand=brand, ok=False)
            self.assertRegex(out, r"failed after .*: no ad among the 5 items run \w+ returned \(none has an "
                                  r"ad_archive_id or adArchiveID\): its output cannot be read; the first item's "
                                  r"keys: ", job_type)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 2,
                         "the retry would read the same run: not retried")
        self.assertEqual(self.count("public.competitor_ads") + self.count("public.facebook_ads"), 0)
        self.assertIsNone(self.one(f"SELECT last_scraped_at FROM public.competitors WHERE id = '{comp}'")
                          ["last_scraped_at"])
        self.assertEqual(self.count("sluice.dataset_status", "last_status = 'failed'"), 2)

    def test_input_that_rules_a_run_out_leaves_fresh_data_fresh(self):
        # a typo in an id made the brand's fresh competitor_ads "failing" (and
        # queue --if-stale queue a scrape); the data was never touched
        comp = self.setup_brand()
        self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB, "max_ads": 5})
        before = self.dataset("competitor_ads")
        self.assertEqual(before["last_status"], "completed")
        _, out = self.run_job("competitor_scrape", {"competitor_id": "00000000-0000-4000-8000-000000000000",
                                                    "ad_library_url": ADLIB}, ok=False)
        self.assertIn("sluice competitors add --brand", out)
        after = self.dataset("competitor_ads")
        self.assertEqual(self.health()["competitor_ads"], "fresh")
        for col in ("last_status", "last_run_id", "last_success_at", "records_affected", "error_message"):
            self.assertEqual(after[col], before[col], col)
        proc = self.sluice("queue", "competitor_scrape", "--brand", BRAND, "--if-stale", "--params",
                           json.dumps({"competitor_id": comp, "ad_library_url": ADLIB}))
        self.assertEqual(proc.stdout, "", "fresh data: nothing queued")

    def test_brand_required_types_run_without_a_brand_say_so(self):
        # `sluice run` may omit a brand; these types write the brand's rows and
        # read its account: without one they said "belongs to another brand",
        # "the brand has no Meta ad account", or (asset_download) did nothing and
        # called the platform's ad_assets fresh
        comp = self.setup_brand()
        for job_type, params in [("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB}),
                                 ("meta_sync", {}), ("asset_download", {})]:
            _, out = self.run_job(job_type, params, brand=None, ok=False)
            self.assertIn(f"{job_type} needs ", out)
            self.assertIn("give it with --brand", out)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 3,
                         "permanent failures end the jobs without retries")
        # no platform row for data these types never keep without a brand: it
        # showed in `sluice health` as failing for good
        self.assertEqual(self.count("sluice.dataset_status"), 0)
        proc = self.sluice("health", "--platform", "--check", check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("no datasets match", proc.stderr)
        self.assertEqual(self.svc.stats()["apify_runs_started"], {})

    def test_competitor_scrape_database_error_reads_as_in_the_other_types(self):
        # a failure that is no bad data (here a deployment's trigger) fails the
        # run with "database: <message>", as rows.query says it for every type
        comp = self.setup_brand()
        self.scalar("""CREATE FUNCTION public.no_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'competitors are read-only'; END $$;
            CREATE TRIGGER no_update BEFORE UPDATE ON public.competitors
                FOR EACH ROW EXECUTE FUNCTION public.no_update()""")
        _, out = self.run_job("competitor_scrape", {"competitor_id": comp, "ad_library_url": ADLIB,
                                                    "max_ads": 10}, ok=False)
        self.assertRegex(out, r"failed after [0-9.]+s: database: competitors are read-only; then retry attempt 2 ")

    # -------------------------------------------------------------- template_scrape

    def test_template_scrape_with_an_unwritable_store_fails_saying_so(self):
        self.setup_brand()
        self.fixture_ads(SEARCH, 5)
        blocker = os.path.join(self.tmp, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        _, out = self.run_job("template_scrape", {"search_url": SEARCH}, brand=None,
                              env=self.env({"SLUICE_ASSET_DIR": blocker}), ok=False)
        self.assertIn("asset store cannot be written", out)
        # the run's error is the problem itself, not a handler's file and line
        self.assertRegex(self.scalar("SELECT error_message FROM sluice.scheduled_job_runs "
                                     "WHERE job_type = 'template_scrape' ORDER BY created_at DESC LIMIT 1"),
                         r"^the asset store cannot be written: ")

    def test_template_scrape_assets_dedupe_and_queue(self):
        self.setup_brand()
        items = self.fixture_ads(SEARCH, 50)
        # one image that the CDN no longer has: recorded, the others go on
        kept = [it for it in items if it["snapshot"]["display_format"] != "VIDEO"]
        first = kept[0]["snapshot"]
        url = (first["images"][0]["original_image_url"] if first["images"] and isinstance(first["images"][0], dict)
               else first["images"][0] if first["images"] else first["cards"][0]["original_image_url"])
        self.svc.control({"media_fail": [media_id(url)]})
        res, log = self.run_job("template_scrape", {"search_url": SEARCH}, brand=None)
        video_only = len(items) - len(kept)
        self.assertEqual(res["records"], len(kept))
        self.assertIn("%d video-only ads skipped" % video_only, log)
        self.assertEqual(self.count("public.facebook_ads"), len(kept))
        self.assertEqual(self.count("public.scraped_ad_assets", "asset_type = 'video'"), 0)
        self.assertEqual(self.count("public.scraped_ad_assets", "status = 'expired'"), 1)
        bad = self.one("SELECT original_url, error FROM public.scraped_ad_assets WHERE status = 'expired'")
        self.assertEqual(bad["original_url"], url)
        self.assertIn("404", bad["error"])
        rows = self.assert_store_consistent("scraped_ad_assets")
        shas = {r["sha256"] for r in rows}
        self.assertLess(len(shas), len(rows), "ads sharing a creative share bytes")
        self.assertEqual(len(self.stored_files()), len(shas), "the same bytes are stored once")
        queued = self.sql("SELECT asset_id, sha256, status FROM public.template_queue")
        self.assertEqual(len(queued), len(shas))
        self.assertEqual({q["sha256"] for q in queued}, shas)
        self.assertTrue(all(q["status"] == "pending" for q in queued))
        platform = self.one("SELECT * FROM sluice.dataset_status WHERE brand_id IS NULL "
                            "AND dataset_key = 'templates_scraped'")
        self.assertEqual((platform["last_status"], platform["records_affected"]), ("completed", len(kept)))
        # again, with the image back: only that one is fetched, nothing duplicated
        self.svc.reset()
        res, log = self.run_job("template_scrape", {"search_url": SEARCH}, brand=None)
        self.assertEqual(res["new"], 0)
        self.assertEqual(res["assets_downloaded"], 1)
        self.assertEqual(len(self.svc.log("/media/")), 1)
        self.assertEqual(self.count("public.scraped_ad_assets", "status <> 'downloaded'"), 0)
        self.assertEqual(self.count("public.facebook_ads"), len(kept))
        self.assertEqual(self.scalar("SELECT DISTINCT times_seen FROM public.facebook_ads"), "2")
        self.assertEqual(self.count("public.template_queue"),
                         int(self.scalar("SELECT count(DISTINCT sha256) FROM public.scraped_ad_assets")))

    def test_template_scrape_fails_when_every_download_failed(self):
        self.setup_brand()
        items = self.fixture_ads(SEARCH, 10)
        self.svc.control({"status_500": {"path_prefix": "/media/"}})
        _, out = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 10, "images_only": False},
                              ok=False)
        n = self.count("public.scraped_ad_assets")
        self.assertGreater(n, 0)
        self.assertIn(f"no media downloaded: all {n} downloads failed (0 expired, {n} failed; first: ", out)
        ds = self.dataset("templates_scraped")
        self.assertEqual(ds["last_status"], "failed")
        self.assertIn("no media downloaded", ds["error_message"])
        self.assertEqual(self.count("public.facebook_ads"), len(items), "the ads are stored all the same")
        self.assertEqual(self.count("public.template_queue"), 0)
        self.assertEqual(self.scalar("SELECT status FROM sluice.scheduled_jobs"), "active", "retried")
        # the run's error is the problem itself, not a handler's file and line
        self.assertRegex(self.scalar("SELECT error_message FROM sluice.scheduled_job_runs"),
                         r"^no media downloaded: ")

    def test_template_scrape_every_download_expired_is_not_retried(self):
        # the retry reads the same actor run, so asks for the same URLs: when the
        # CDN said every one of them is gone, a retry cannot help
        self.setup_brand()
        self.fixture_ads(SEARCH, 10)
        self.svc.control({"status_500": {"path_prefix": "/media/", "status": 404}})
        _, out = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 10}, ok=False)
        n = self.count("public.scraped_ad_assets", "status = 'expired'")
        self.assertGreater(n, 0)
        self.assertEqual(self.count("public.scraped_ad_assets"), n)
        self.assertIn(f"no media downloaded: all {n} downloads failed ({n} expired, 0 failed; first: ", out)
        self.assertIn("not retried", out)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 1,
                         "a permanent failure ends the job without retries")
        self.assertEqual(self.dataset("templates_scraped")["last_status"], "failed")
        self.assertRegex(self.scalar("SELECT error_message FROM sluice.scheduled_job_runs"),
                         r"^no media downloaded: ")

    def test_template_scrape_asset_row_the_database_refuses_is_skipped(self):
        # the first media row written is refused (a deployment's trigger, with
        # a constraint's SQLSTATE): it failed the whole job, on every retry; now
        # it is skipped, logged and counted, and the others are recorded
        self.sluice("migrate")
        self.scalar("""CREATE SEQUENCE public.refusals;
            CREATE FUNCTION public.refuse_first() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('public.refusals') = 1 THEN
                    RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_first BEFORE INSERT ON public.scraped_ad_assets
                FOR EACH ROW EXECUTE FUNCTION public.refuse_first()""")
        res, log = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 10}, brand=None)
        self.assertEqual(res["rows_skipped"], 1)
        self.assertRegex(log, r"scraped_ad_assets: image [0-9]+ of ad [0-9]+ skipped, the database refused it: "
                              r"refused \(23514\)")
        stored = self.count("public.scraped_ad_assets")
        self.assertGreater(stored, 0)
        self.assertEqual(res["assets_downloaded"], self.count("public.scraped_ad_assets", "status = 'downloaded'"))
        self.assertEqual(res["assets_downloaded"] + res["assets_expired"] + res["assets_failed"], stored)
        # the next scrape fetches the skipped one (every other is downloaded)
        res, _ = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 10}, brand=None)
        self.assertEqual(self.count("public.scraped_ad_assets"), stored + 1)

    def test_template_scrape_database_error_reads_as_in_the_other_types(self):
        self.sluice("migrate")
        self.scalar("""CREATE FUNCTION public.no_queue() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the template queue is closed'; END $$;
            CREATE TRIGGER no_queue BEFORE INSERT ON public.template_queue
                FOR EACH ROW EXECUTE FUNCTION public.no_queue()""")
        _, out = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 10}, brand=None, ok=False)
        self.assertRegex(out, r"failed after [0-9.]+s: database: the template queue is closed; then retry attempt 2 ")

    def test_template_scrape_with_videos_and_without_queue(self):
        self.setup_brand()
        items = self.fixture_ads(SEARCH, 20)
        res, _ = self.run_job("template_scrape", {"search_url": SEARCH, "max_ads": 20, "images_only": False,
                                                  "auto_queue": False})
        self.assertEqual(res["records"], len(items))
        self.assertGreater(self.count("public.scraped_ad_assets", "asset_type = 'video' AND status = 'downloaded'"), 0)
        self.assertEqual(self.count("public.template_queue"), 0)
        self.assert_store_consistent("scraped_ad_assets")
        self.assertTrue(all(r["mime_type"] == "video/mp4" for r in self.sql(
            "SELECT mime_type FROM public.scraped_ad_assets WHERE asset_type = 'video'")))
        dims = self.sql("SELECT dimensions FROM public.scraped_ad_assets WHERE asset_type = 'image'")
        self.assertTrue(all(d["dimensions"]["width"] in (1080, 1200) for d in dims))
        self.assertEqual(self.dataset("templates_scraped")["last_status"], "completed")

    # -------------------------------------------------------------- meta_sync

    def test_meta_sync_pages_and_upserts(self):
        self.setup_brand()
        res, log = self.run_job("meta_sync", {"days_back": 30, "download_max_videos": 0,
                                              "download_max_images": 0})
        expected = self.expected_insight_rows(res["since"], res["until"])
        self.assertGreater(len(expected), 100, "the window must span several pages")
        pages = (len(expected) + 99) // 100
        self.assertEqual(res["pages"], pages)
        insights = self.svc.log(f"/v21.0/{ACCOUNT}/insights")
        self.assertEqual(len(insights), pages)
        self.assertNotIn("after", insights[0]["query"])
        self.assertTrue(all("after" in e["query"] for e in insights[1:]), "pages follow paging.next")
        q = insights[0]["query"]
        self.assertEqual((q["level"], q["time_increment"], q["limit"]), ("ad", "1", "100"))
        self.assertEqual(json.loads(q["time_range"]), {"since": res["since"], "until": res["until"]})
        self.assertNotIn("access_token", q, "the token travels in a header")
        rows = self.sql("SELECT meta_ad_id, date::text AS date, spend, impressions, purchases, roas, "
                        "video_views, hook_rate, raw_actions FROM public.meta_ads_performance")
        self.assertEqual(len(rows), len(expected))
        self.assertEqual({(r["meta_ad_id"], r["date"]) for r in rows},
                         {(e["ad_id"], e["date_start"]) for e in expected})
        by_key = {(r["meta_ad_id"], r["date"]): r for r in rows}
        for e in expected:
            self.assertAlmostEqual(float(by_key[(e["ad_id"], e["date_start"])]["spend"]), float(e["spend"]))
        self.assertTrue(any(r["purchases"] for r in rows))
        self.assertTrue(all(r["video_views"] is None or r["hook_rate"] > 0 for r in rows))
        self.assertEqual(self.dataset("meta_ads_performance")["records_affected"], len(expected))
        # again: the same rows, updated; one ad was paused since
        ads = svc_graph.account_ads(SEED, ACCOUNT)
        paused = next(a["ad_id"] for a in ads
                      if svc_graph.ad_object(SEED, a["ad_id"], self.svc.url)["ad"]["effective_status"] == "ACTIVE")
        self.svc.reset()
        self.svc.control({"graph_ad_status": {paused: "PAUSED"}})
        res2, _ = self.run_job("meta_sync", {"days_back": 30, "download_max_videos": 0, "download_max_images": 0})
        self.assertEqual(res2["new_rows"], 0)
        self.assertEqual(self.count("public.meta_ads_performance"), len(expected))
        # creatives were read once (the second run copies nothing and reads no creative);
        # the statuses of the known ads are read again, all in one request
        self.assertEqual(res["creatives"]["read"], len(ads))
        self.assertEqual((res["creatives"]["statuses_read"], res["creatives"]["statuses_changed"]), (0, 0))
        self.assertEqual(res2["creatives"]["read"], 0)
        self.assertEqual((res2["creatives"]["statuses_read"], res2["creatives"]["statuses_changed"]),
                         (len(ads), 1))
        by_ids = [e for e in self.svc.log("/v21.0/") if "ids" in e["query"]]
        self.assertEqual(len(by_ids), 1)
        self.assertEqual(sorted(by_ids[0]["query"]["ids"].split(",")), sorted(a["ad_id"] for a in ads))
        self.assertEqual(self.scalar(f"SELECT string_agg(DISTINCT ad_status, ',') FROM public.meta_ads_performance "
                                     f"WHERE meta_ad_id = '{paused}'"), "PAUSED")
        self.assertEqual(self.dataset("ad_thumbnails")["records_affected"], len(ads))
        # an ad the API no longer knows fails its request of 50: the others are read all the same
        self.scalar("INSERT INTO public.meta_ads_performance (brand_id, meta_ad_account_id, meta_ad_id, date, "
                    "is_video, thumbnail_url, ad_status, spend) SELECT brand_id, meta_ad_account_id, 'deleted-ad', date, "
                    "false, thumbnail_url, 'ACTIVE', 1 FROM public.meta_ads_performance LIMIT 1")
        res3, log3 = self.run_job("meta_sync", {"days_back": 30, "download_max_videos": 0, "download_max_images": 0})
        self.assertEqual((res3["creatives"]["statuses_read"], res3["creatives"]["statuses_failed"]), (len(ads), 1))
        self.assertIn("status of ad deleted-ad: graph error 100", log3)
        self.assertEqual(self.scalar("SELECT ad_status FROM public.meta_ads_performance "
                                     "WHERE meta_ad_id = 'deleted-ad'"), "ACTIVE")
        self.assertEqual(self.count("public.meta_ads_performance", "thumbnail_url IS NULL OR is_video IS NULL"), 0)
        for ad in ads:
            obj = svc_graph.ad_object(SEED, ad["ad_id"], self.svc.url)
            row = self.one(f"SELECT DISTINCT is_video, meta_video_id, ad_status FROM public.meta_ads_performance "
                           f"WHERE meta_ad_id = '{ad['ad_id']}'")
            self.assertEqual(row["is_video"], obj["is_video"])
            self.assertEqual(row["ad_status"], "PAUSED" if ad["ad_id"] == paused else obj["ad"]["effective_status"])
            if obj["is_video"]:
                self.assertEqual(row["meta_video_id"], obj["video"]["id"], "object_story_spec's id wins")

    def test_meta_sync_bad_insight_rows_are_cleaned_or_skipped_not_fatal(self):
        # a NUL in one ad's name (Postgres refuses it in text and jsonb) and an
        # impressions count past bigint in another ad's rows: each failed the
        # whole page, on every retry. The NUL is removed; the rows the database
        # still refuses are skipped, logged with their key, and counted
        self.setup_brand()
        ads = svc_graph.account_ads(SEED, ACCOUNT)
        nul, huge = ads[0]["ad_id"], ads[1]["ad_id"]
        self.svc.control({"graph_patch_insights": [
            {"match": {"ad_id": nul}, "set": {"ad_name": "Summer\u0000 sale"}},
            {"match": {"ad_id": huge}, "set": {"impressions": "100000000000000000000"}},
        ]})
        res, log = self.run_job("meta_sync", {"days_back": 3, "download_max_videos": 0,
                                              "download_max_images": 0})
        expected = self.expected_insight_rows(res["since"], res["until"])
        refused = [e for e in expected if e["ad_id"] == huge]
        self.assertTrue(refused and any(e["ad_id"] == nul for e in expected), "both ads ran in the window")
        self.assertEqual(res["rows_skipped"], len(refused))
        self.assertEqual(self.count("public.meta_ads_performance"), len(expected) - len(refused))
        self.assertEqual(self.count("public.meta_ads_performance", f"meta_ad_id = '{huge}'"), 0)
        self.assertEqual(self.scalar(f"SELECT DISTINCT ad_name FROM public.meta_ads_performance "
                                     f"WHERE meta_ad_id = '{nul}'"), "Summer sale")
        self.assertRegex(log, f"ad {nul} on [0-9-]+: NUL characters removed from 1 text(?!s)")
        self.assertIn(f"meta_ads_performance: ad {huge} on {refused[0]['date_start']} skipped, the database "
                      f"refused it: value \"100000000000000000000\" is out of range for type bigint (22003)", log)
        ds = self.dataset("meta_ads_performance")
        self.assertEqual((ds["last_status"], ds["metadata"]["rows_skipped"]), ("completed", len(refused)))

    def test_meta_sync_all_steps_and_classification_cache(self):
        self.setup_brand()
        res, log = self.run_job("meta_sync", {"auto_classify": True})
        self.assertIn("every step succeeded", log)
        health = self.health()
        for key in ("meta_ads_performance", "ad_thumbnails", "ad_assets", "ad_classifications"):
            self.assertEqual(health[key], "fresh", key)
        n_ads = int(self.scalar("SELECT count(DISTINCT meta_ad_id) FROM public.meta_ads_performance"))
        self.assertEqual(self.count("public.ad_creative_classifications"), n_ads)
        self.assertEqual(self.svc.stats()["llm_calls"].get("classify"), n_ads)
        cls = self.sql("SELECT c.creative_format, p.is_video FROM public.ad_creative_classifications c "
                       "JOIN (SELECT DISTINCT meta_ad_id, is_video FROM public.meta_ads_performance) p USING (meta_ad_id)")
        self.assertTrue(all(c["creative_format"].startswith("video_" if c["is_video"] else "image_") for c in cls))
        # assets: one row per ad; exactly the videos Graph gives no source for
        # (the fixture's "Reels") are marked as such
        self.assertEqual(self.count("public.meta_ad_assets"), n_ads)
        self.assert_sourceless_videos_marked()
        self.assert_store_consistent("meta_ad_assets")
        # again: nothing classified twice, nothing downloaded twice
        self.svc.reset()
        res, log = self.run_job("meta_sync", {"auto_classify": True})
        self.assertEqual(self.count("public.ad_creative_classifications"), n_ads)
        self.assertIsNone(self.svc.stats()["llm_calls"].get("classify"))
        self.assertEqual(self.svc.log("/media/"), [])
        self.assertEqual(res["classifications"]["reused"], n_ads)
        # without auto_classify the step does not run: the dataset keeps what the
        # last classifying run recorded
        before = self.dataset("ad_classifications")
        res, log = self.run_job("meta_sync", {})
        after = self.dataset("ad_classifications")
        self.assertEqual((after["last_status"], after["last_success_at"], after["metadata"]),
                         (before["last_status"], before["last_success_at"], before["metadata"]))

    def test_meta_sync_one_bad_classification_does_not_fail_the_step(self):
        # one reply with a NUL (cleaned) and one with a value the table refuses (a
        # deployment's constraint): the refused ad counts as failed, the rest are
        # stored, and the step completes
        self.setup_brand()
        self.scalar("ALTER TABLE public.ad_creative_classifications ADD CONSTRAINT test_no_long_hook "
                    "CHECK (hook_type <> 'refused_hook')")
        try:
            self.svc.control({"llm_classify_set": [
                {"set": {"reasoning": "bad\u0000byte"}, "count": 1},
                {"set": {"hook_type": "refused_hook"}, "count": 1}]})
            res, log = self.run_job("meta_sync", {"auto_classify": True})
        finally:
            self.scalar("ALTER TABLE public.ad_creative_classifications DROP CONSTRAINT test_no_long_hook")
        n_ads = int(self.scalar("SELECT count(DISTINCT meta_ad_id) FROM public.meta_ads_performance"))
        self.assertEqual(res["classifications"]["failed"], 1, log)
        self.assertEqual(res["classifications"]["classified"], n_ads - 1)
        self.assertEqual(self.count("public.ad_creative_classifications", "reasoning = 'badbyte'"), 1)
        self.assertRegex(log, r"ad_creative_classifications: ad \S+ skipped, the database refused it: "
                              r".*test_no_long_hook.* \(23514\)")
        # the reply is kept whole, its score with four decimals
        row = self.one("SELECT raw_classification ->> 'reasoning' AS raw, raw_classification ->> 'hook_type' AS hook, "
                       "hook_type, congruence_score::text AS score, model_used, prompt_version, source "
                       "FROM public.ad_creative_classifications WHERE reasoning = 'badbyte'")
        self.assertEqual((row["raw"], row["hook"], row["source"], row["prompt_version"]),
                         ("badbyte", row["hook_type"], "meta_sync", "classify-v1"))
        self.assertRegex(row["score"], r"^[01]\.[0-9]{4}$")
        self.assertTrue(row["model_used"])
        self.assertEqual(self.health()["ad_classifications"], "fresh")

    def test_meta_sync_step4_failing_is_not_fatal(self):
        self.setup_brand()
        self.svc.control({"status_500": {"path_prefix": "/media/"}})
        res, log = self.run_job("meta_sync", {})
        self.assertIn("step 4 (ad_assets) failed", log)
        self.assertEqual(res["failed_steps"][0].split(":")[0], "step 4 (ad_assets)")
        health = self.health()
        self.assertEqual(health["ad_assets"], "failing")
        self.assertEqual(health["meta_ads_performance"], "fresh")
        self.assertEqual(health["ad_thumbnails"], "fresh")
        self.assertEqual(health["ad_classifications"], "never")  # auto_classify off: not run
        self.assertIn("downloads failed", self.dataset("ad_assets")["error_message"])
        self.assertEqual(self.one("SELECT status FROM sluice.scheduled_jobs")["status"], "completed")
        self.assertGreater(self.count("public.meta_ad_assets", "status = 'failed'"), 0)
        self.assertEqual(self.count("public.meta_ad_assets", "status = 'downloaded'"), 0)

    def test_meta_sync_step1_failing_fails_and_retries(self):
        self.setup_brand()
        # the first attempt and its three in-client retries fail; the job's retry works
        self.svc.control({"graph_fail_path": {"path": "/insights", "count": 4, "status": 500}})
        job = self.sluice("queue", "meta_sync", "--brand", BRAND, "--params",
                          json.dumps({"download_max_videos": 0, "download_max_images": 0}), env=self.env()).stdout.strip()
        with self.serve("--concurrency", "4", env=self.env()):
            self.wait_for(lambda: self.count("sluice.scheduled_jobs", f"id = '{job}' AND status <> 'active'"),
                          90, "meta_sync did not finish")
        runs = self.sql(f"SELECT attempt_number, status, error_message, logs FROM sluice.scheduled_job_runs "
                        f"WHERE scheduled_job_id = '{job}' ORDER BY attempt_number")
        self.assertEqual([(r["attempt_number"], r["status"]) for r in runs], [(1, "failed"), (2, "completed")])
        # the problem itself, not a handler's file and line
        self.assertRegex(runs[0]["error_message"], r"^step 1-2 \(meta_ads_performance\): ")
        self.assertIn("after 4 attempts", runs[0]["error_message"])
        self.assertEqual(runs[0]["logs"].count("retrying in"), 3)
        self.assertEqual(self.one(f"SELECT status FROM sluice.scheduled_jobs WHERE id = '{job}'")["status"], "completed")
        self.assertEqual(self.health()["meta_ads_performance"], "fresh")

    def test_meta_sync_permanent_failures(self):
        self.setup_brand()
        self.sluice("brands", "add", "NoAccount")
        _, out = self.run_job("meta_sync", {}, brand="NoAccount", ok=False)
        self.assertIn("the brand NoAccount has no Meta ad account: link one with "
                      "SELECT sluice.add_ad_account('NoAccount', 'act_<digits>')", out)
        _, out = self.run_job("meta_sync", {}, env=self.env({"META_ACCESS_TOKEN": "bad-token"}), ok=False)
        self.assertIn("graph error 190", out)
        self.assertNotIn("bad-token", out)
        env = self.env()
        env.pop("META_ACCESS_TOKEN")
        _, out = self.run_job("meta_sync", {}, env=env, ok=False)
        self.assertIn("META_ACCESS_TOKEN is not set", out)
        self.assertIn("export a Meta system user token as META_ACCESS_TOKEN", out)
        # a base URL that is no URL is a setting to fix, not a service that is down: not retried
        _, out = self.run_job("meta_sync", {}, env=self.env({"META_GRAPH_URL": "graph.facebook.com/v21.0"}),
                              ok=False)
        self.assertIn('META_GRAPH_URL must be an http(s) URL such as https://graph.facebook.com/v21.0, '
                      'not "graph.facebook.com/v21.0"', out)
        self.assertNotIn("retrying", out)
        # an account the Graph API does not know (a typo when it was linked) says so
        self.sluice("brands", "add", "O'Typo")
        self.scalar("SELECT sluice.add_ad_account('O''Typo', 'act_99990001')")
        _, out = self.run_job("meta_sync", {}, brand="O'Typo", ok=False)
        self.assertIn("graph error 100/33", out)
        self.assertIn("the brand's ad account act_99990001 is not one the token can read: check the id and "
                      "the token's access to it, or link the right account with "
                      "SELECT sluice.add_ad_account('O''Typo', 'act_<digits>')", out)
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 5)
        # without auto_classify, no run touched the classifications, failed or not
        self.assertEqual(self.count("sluice.dataset_status", "dataset_key = 'ad_classifications'"), 0)
        self.assertEqual(self.health()["meta_ads_performance"], "failing")

    def test_no_downloads_asked_for_keeps_ad_assets_as_it_was(self):
        # download maxima of 0 downloaded nothing and called ad_assets fresh
        self.setup_brand()
        res, log = self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        self.assertIn("step 4 (ad_assets) skipped: download_max_videos and download_max_images are 0", log)
        self.assertNotIn("assets", res)
        self.assertEqual(self.count("sluice.dataset_status", "dataset_key = 'ad_assets'"), 0)
        self.assertEqual(self.health()["ad_assets"], "never")
        self.assertEqual(self.health()["meta_ads_performance"], "fresh")
        _, out = self.run_job("asset_download", {"max_videos": 0, "max_images": 0}, ok=False)
        self.assertIn("max_videos and max_images are both 0: nothing to download", out)
        self.assertEqual(self.count("sluice.dataset_status", "dataset_key = 'ad_assets'"), 0)
        self.assertEqual(self.count("public.meta_ad_assets"), 0)
        # one of them is enough
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 2})
        self.assertEqual(res["images"], 2)
        self.assertEqual(self.health()["ad_assets"], "fresh")

    def test_asset_download_for_a_brand_without_an_ad_account_says_so(self):
        # it completed with nothing to do and called the brand's ad_assets fresh
        self.setup_brand()
        self.sluice("brands", "add", "NoAccount")
        _, out = self.run_job("asset_download", {}, brand="NoAccount", ok=False)
        self.assertIn("the brand NoAccount has no Meta ad account: link one with", out)
        self.assertEqual(self.health("NoAccount")["ad_assets"], "failing")
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 1)
        self.assertEqual(self.svc.stats().get("graph_requests", 0), 0)

    def test_asset_download_before_any_meta_sync_leaves_ad_assets_alone(self):
        # with an account but no ads synced yet it downloaded nothing and
        # called the brand's ad_assets fresh
        self.setup_brand()
        _, out = self.run_job("asset_download", {}, ok=False)
        self.assertIn(f"the brand {BRAND} has no synced Meta ads yet: meta_sync finds them", out)
        self.assertEqual(self.count("sluice.dataset_status", "dataset_key = 'ad_assets'"), 0)
        self.assertEqual(self.health()["ad_assets"], "never")
        self.assertEqual(self.svc.stats().get("graph_requests", 0), 0)
        # retried: the job waits for its next attempt, not failed for good
        job = self.one("SELECT status, attempts, next_run_at IS NOT NULL AS due FROM sluice.scheduled_jobs")
        self.assertEqual((job["status"], job["attempts"], job["due"]), ("active", 1, True))
        # once meta_sync has synced the brand, it runs
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 2})
        self.assertEqual(res["images"], 2)
        self.assertEqual(self.health()["ad_assets"], "fresh")

    def test_graph_throttling_is_retried_and_tokens_stay_secret(self):
        self.setup_brand()
        # the brand's OAuth token wins over META_ACCESS_TOKEN while valid
        self.scalar(f"SELECT sluice.add_ad_account('{BRAND}', '{ACCOUNT}', p_access_token => 'brand-oauth-secret', "
                    "p_token_expires_at => now() + interval '1 day')")
        self.svc.control({"graph_rate_limit": [{"count": 1, "code": 17}, {"count": 1, "code": 613},
                                               {"count": 1, "code": 80004}]})
        res, log = self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        self.assertEqual(res["graph_retries"], 3)
        self.assertEqual(log.count("rate limited — retrying"), 3)
        graph = self.svc.log("/v21.0/")
        self.assertTrue(graph)
        self.assertTrue(all(e["headers"].get("authorization") == "Bearer brand-oauth-secret" for e in graph))
        logs = self.scalar("SELECT string_agg(logs, '') FROM sluice.scheduled_job_runs")
        for secret in ("brand-oauth-secret", "system-token-123"):
            self.assertNotIn(secret, logs)
            self.assertNotIn(secret, log)
        # expired: back to META_ACCESS_TOKEN
        self.scalar("UPDATE public.brand_ad_accounts SET token_expires_at = now() - interval '1 minute'")
        self.svc.reset()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        graph = self.svc.log("/v21.0/")
        self.assertTrue(graph)
        self.assertTrue(all(e["headers"].get("authorization") == "Bearer system-token-123" for e in graph))

    def test_graph_paging_to_another_host_is_not_followed(self):
        # a paging.next on another host:port than META_GRAPH_URL fails the step,
        # naming that host, and the token never goes there (it used to be
        # followed, with the token in its Authorization header)
        self.setup_brand()
        with Fixture("services.py", "--apify-run-seconds", "0") as other:
            self.svc.control({"graph_paging_base": other.url})
            _, out = self.run_job("meta_sync", {"days_back": 30, "download_max_videos": 0,
                                                "download_max_images": 0}, ok=False)
            self.assertIn(f"a next page on another host ({other.url}) was not followed", out)
            self.assertNotIn("system-token-123", out)
            self.assertEqual(other.log(), [])
        self.assertEqual(len(self.svc.log(f"/v21.0/{ACCOUNT}/insights")), 1)
        # permanent: the job is not tried again
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'failed' AND attempts = 0"), 1)

    def test_graph_paging_that_names_a_page_already_read_stops(self):
        # a paging.next naming the page just read (a broken cursor) was followed
        # again and again, the same rows read until the run timed out
        self.setup_brand()
        self.svc.control({"graph_paging_repeat": True})
        _, out = self.run_job("meta_sync", {"days_back": 30, "download_max_videos": 0,
                                            "download_max_images": 0}, ok=False)
        self.assertIn(f"graph: page 2's paging.next is page 2's URL again: stopped rather than read "
                      f"the same pages again (/{ACCOUNT}/insights)", out)
        self.assertEqual(len(self.svc.log(f"/v21.0/{ACCOUNT}/insights")), 2)

    def test_rate_limit_respected(self):
        """The built-in limit (100/min, evenly spaced) is shared by concurrent runs."""
        self.setup_brand()
        self.setup_brand("Beta", "act_5151515151")
        env = self.env(fast=False)
        jobs = [self.sluice("queue", "meta_sync", "--brand", b, env=env).stdout.strip() for b in (BRAND, "Beta")]
        with self.serve("--concurrency", "4", env=env):
            self.wait_for(lambda: self.count("sluice.scheduled_jobs", "status = 'active'") == 0,
                          150, "the meta_syncs did not finish")
        self.assertEqual(self.count("sluice.scheduled_jobs", "status = 'completed'"), 2)
        graph = sorted(e["t"] for e in self.svc.log("/v21.0/"))
        self.assertGreater(len(graph), 20)
        # arrival times: one request's transit may be late by a little (a busy
        # machine), which shortens the gap after it; the limiter's spacing shows
        # over any stretch of requests, late by at most one transit
        for i in range(len(graph)):
            for j in range(i + 1, len(graph)):
                self.assertGreaterEqual(graph[j] - graph[i], (j - i) * 0.6 - 0.1,
                                        f"requests {i} to {j}: at most one every 0.6 s")
        self.assertTrue(all(n <= 100 for n in self.svc.stats()["graph_per_minute"]))
        runs = self.sql("SELECT started_at, completed_at FROM sluice.scheduled_job_runs ORDER BY started_at")
        self.assertLess(runs[1]["started_at"], runs[0]["completed_at"], "the two runs overlapped")

    # -------------------------------------------------------------- asset_download

    def test_asset_download_per_asset_failures(self):
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        self.assertEqual(self.count("public.meta_ad_assets"), 0)
        images = self.sql("SELECT DISTINCT meta_ad_id, coalesce(image_url, thumbnail_url) AS url "
                          "FROM public.meta_ads_performance WHERE NOT is_video ORDER BY meta_ad_id")
        self.assertGreaterEqual(len(images), 3)
        gone, broken = images[0], images[1]
        self.svc.control({"media_status": {media_id(gone["url"]): 410, media_id(broken["url"]): 503}})
        res, log = self.run_job("asset_download", {"max_videos": 1, "max_images": 40})
        self.assertEqual(res["videos"], 1)
        self.assertEqual(res["images"], len(images))
        rows = {r["meta_ad_id"]: r for r in self.sql("SELECT * FROM public.meta_ad_assets")}
        self.assertEqual(len(rows), len(images) + 1)
        self.assertEqual((rows[gone["meta_ad_id"]]["status"], rows[gone["meta_ad_id"]]["not_downloadable_reason"]),
                         ("not_downloadable", "http_410"))
        self.assertEqual(rows[broken["meta_ad_id"]]["status"], "failed")
        self.assertIn("503", rows[broken["meta_ad_id"]]["error"])
        self.assertEqual(rows[broken["meta_ad_id"]]["storage_path"], "")
        ok = [r for r in rows.values() if r["status"] == "downloaded"]
        self.assertGreaterEqual(len(ok), len(images) - 2)
        self.assert_store_consistent("meta_ad_assets")
        self.assertEqual(self.dataset("ad_assets")["last_status"], "completed")
        self.assertEqual(self.dataset("ad_assets")["records_affected"], len(ok))
        # the failed one is tried again (its creative read afresh); the gone one is not
        self.svc.control({"media_status": None})
        self.svc.reset()
        res, _ = self.run_job("asset_download", {"max_videos": 1, "max_images": 40})
        self.assertEqual(res["images"], 1)
        row = self.one(f"SELECT status, attempts FROM public.meta_ad_assets WHERE meta_ad_id = '{broken['meta_ad_id']}'")
        self.assertEqual((row["status"], row["attempts"]), ("downloaded", 2))
        row = self.one(f"SELECT status, attempts FROM public.meta_ad_assets WHERE meta_ad_id = '{gone['meta_ad_id']}'")
        self.assertEqual((row["status"], row["attempts"]), ("not_downloadable", 1))
        self.assertEqual(len(self.svc.log(f"/v21.0/{broken['meta_ad_id']}")), 1)

    def test_asset_download_fails_when_nothing_could_be_read(self):
        self.setup_brand()
        # no creative can be read: meta_sync's step 3 fails, and so must asset_download
        # (it reported ad_assets completed with 0 assets: fresh, with nothing done)
        self.svc.control({"graph_fail_path": {"path": "/v21.0/1202", "status": 400, "code": 100}})
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        ads = [r["meta_ad_id"] for r in self.sql("SELECT DISTINCT meta_ad_id FROM public.meta_ads_performance "
                                                 "ORDER BY meta_ad_id")]
        _, out = self.run_job("asset_download", {}, ok=False)
        self.assertIn(f"nothing downloaded: 0 downloads failed and {len(ads)} creatives could not be read", out)
        ds = self.dataset("ad_assets")
        self.assertEqual(ds["last_status"], "failed")
        self.assertIn("(first: creative of ad 1202", ds["error_message"])
        self.assertEqual(self.health()["ad_assets"], "failing")
        # one creative that cannot be read among good ones: completed, the failure counted
        self.svc.control({"graph_fail_path": {"path": f"/v21.0/{ads[0]}", "status": 400, "code": 100}})
        res, log = self.run_job("asset_download", {"max_videos": 100, "max_images": 100})
        self.assertEqual(res["creatives_failed"], 1)
        self.assertEqual(res["creatives_read"], len(ads) - 1)
        self.assertGreater(res["downloaded"], 0)
        ds = self.dataset("ad_assets")
        self.assertEqual((ds["last_status"], ds["metadata"]["creatives_failed"]), ("completed", 1))
        self.assertIn(f"creative of ad {ads[0]}: graph error 100", log)
        self.assertIn("creatives: %d read, 1 could not be read" % (len(ads) - 1), log)

    def test_asset_rows_the_database_refuses_do_not_fail_the_run(self):
        # one video's source URL with a NUL (Graph's JSON can hold one; Postgres
        # refuses it in text), one image ad whose asset row a deployment's
        # constraint refuses: each failed the whole run, on every retry. The URL
        # is not downloaded and its row stored cleaned; the refused row is
        # skipped, logged with its key and counted
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        videos = self.sql("SELECT DISTINCT meta_ad_id, meta_video_id FROM public.meta_ads_performance "
                          "WHERE is_video ORDER BY meta_ad_id")
        sourced = []
        for v in videos:
            _, _, body = self.svc.json("GET", f"/v21.0/{v['meta_video_id']}?fields=source",
                                       headers={"Authorization": "Bearer system-token-123"})
            if "source" in body:
                sourced.append((v, body["source"]))
        (bad_video, source) = sourced[0]
        image = self.sql("SELECT DISTINCT meta_ad_id FROM public.meta_ads_performance WHERE NOT is_video "
                         "ORDER BY meta_ad_id")[0]["meta_ad_id"]
        self.svc.control({"graph_patch_objects": {"match": {"id": bad_video["meta_video_id"]},
                                                  "set": {"source": source + "\u0000.jpg"}}})
        self.scalar(f"ALTER TABLE public.meta_ad_assets ADD CONSTRAINT not_this_ad CHECK (meta_ad_id <> '{image}')")
        res, log = self.run_job("asset_download", {"max_videos": 100, "max_images": 100})
        self.assertEqual(res["rows_skipped"], 1)
        self.assertIn(f"meta_ad_assets: image of ad {image} skipped, the database refused it", log)
        self.assertEqual(self.count("public.meta_ad_assets", f"meta_ad_id = '{image}'"), 0)
        row = self.one(f"SELECT * FROM public.meta_ad_assets WHERE meta_ad_id = '{bad_video['meta_ad_id']}'")
        self.assertEqual((row["status"], row["source_url"]), ("failed", source + ".jpg"))
        self.assertIn("NUL", row["error"])
        self.assertIn(f"video of ad {bad_video['meta_ad_id']}: NUL characters removed", log)
        self.assertEqual(self.svc.log(urlsplit(source).path), [], "the URL was not cut at its NUL and fetched")
        downloaded = self.count("public.meta_ad_assets", "status = 'downloaded'")
        self.assertGreater(downloaded, 0)
        self.assertEqual((res["records"], res["downloaded"]), (downloaded, downloaded))
        ds = self.dataset("ad_assets")
        self.assertEqual((ds["last_status"], ds["records_affected"], ds["metadata"]["rows_skipped"]),
                         ("completed", downloaded, 1))

    def test_asset_403_is_an_expired_url_not_a_lost_asset(self):
        # a CDN 403 is a signed URL past its expiry: the asset stays to do, and the
        # next run reads the ad's creative again (a fresh URL) and downloads it
        images = self.synced_image_ads()
        expired = images[0]
        self.svc.control({"media_status": {media_id(expired["url"]): 403}})
        res, log = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual((res["failed"], res["not_downloadable"]), (1, 0))
        row = self.one(f"SELECT * FROM public.meta_ad_assets WHERE meta_ad_id = '{expired['meta_ad_id']}'")
        self.assertEqual((row["status"], row["not_downloadable_reason"]), ("failed", None))
        self.assertIn("HTTP 403 (an expired signed URL, most likely)", row["error"])
        self.assertEqual(self.dataset("ad_assets")["last_status"], "completed")
        self.svc.control({"media_status": None})
        self.svc.reset()
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual((res["images"], res["downloaded"], res["creatives_read"]), (1, 1, 1))
        self.assertEqual(len(self.svc.log(f"/v21.0/{expired['meta_ad_id']}")), 1, "its creative read again")
        row = self.one(f"SELECT status, attempts, consecutive_403s FROM public.meta_ad_assets "
                       f"WHERE meta_ad_id = '{expired['meta_ad_id']}'")
        self.assertEqual((row["status"], row["attempts"], row["consecutive_403s"]), ("downloaded", 2, 0))
        # rows the old rule marked not_downloadable for good are made failed by the migration
        self.scalar(f"UPDATE public.meta_ad_assets SET status = 'not_downloadable', storage_path = '', "
                    f"not_downloadable_reason = 'http_403' WHERE meta_ad_id = '{expired['meta_ad_id']}'")
        self.scalar("DELETE FROM sluice.schema_migrations WHERE version = '103'")
        self.sluice("migrate")
        row = self.one(f"SELECT status, not_downloadable_reason FROM public.meta_ad_assets "
                       f"WHERE meta_ad_id = '{expired['meta_ad_id']}'")
        self.assertEqual((row["status"], row["not_downloadable_reason"]), ("failed", None))
        # and 108 counts such a row's 403 as the first of the three it may have
        self.scalar("DELETE FROM sluice.schema_migrations WHERE version = '108'")
        self.sluice("migrate")
        self.assertEqual(self.scalar(f"SELECT consecutive_403s FROM public.meta_ad_assets "
                                     f"WHERE meta_ad_id = '{expired['meta_ad_id']}'"), "1")

    def test_asset_403_on_every_run_is_given_up_after_three(self):
        # a 403 that a freshly read URL does not cure is not an expired URL: after
        # three runs in a row answered 403 the asset is not_downloadable, and no
        # run asks for it again (each asked for it, and read its creative, for good)
        images = self.synced_image_ads()
        gone = images[0]
        self.svc.control({"media_status": {media_id(gone["url"]): 403}})
        where = f"meta_ad_id = '{gone['meta_ad_id']}'"
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual(res["failed"], 1)
        row = self.one(f"SELECT status, consecutive_403s FROM public.meta_ad_assets WHERE {where}")
        self.assertEqual((row["status"], row["consecutive_403s"]), ("failed", 1))
        # nothing else to do and nothing got: this run fails (and would be retried)
        _, out = self.run_job("asset_download", {"max_videos": 0, "max_images": 40}, ok=False)
        self.assertIn("nothing downloaded: 1 download failed", out)
        row = self.one(f"SELECT status, consecutive_403s FROM public.meta_ad_assets WHERE {where}")
        self.assertEqual((row["status"], row["consecutive_403s"]), ("failed", 2))
        # the third: given up, which is an outcome, not a failure
        res, log = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual((res["attempted"], res["failed"], res["not_downloadable"]), (1, 0, 1))
        row = self.one(f"SELECT * FROM public.meta_ad_assets WHERE {where}")
        self.assertEqual((row["status"], row["not_downloadable_reason"], row["consecutive_403s"], row["attempts"]),
                         ("not_downloadable", "http_403_repeated", 3, 3))
        self.assertIn("HTTP 403 on 3 runs in a row", row["error"])
        self.assertEqual(len(self.svc.log("/media/img/" + media_id(gone["url"]))), 3)
        self.assertEqual(len(self.svc.log(f"/v21.0/{gone['meta_ad_id']}")), 3,
                         "its creative read by meta_sync, then again by the second and third runs")
        self.svc.reset()
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual((res["attempted"], res["creatives_read"]), (0, 0))
        self.assertEqual(self.svc.log("/media/"), [])

    def test_asset_403_counts_only_runs_that_got_a_fresh_url(self):
        # the cap is for a file that refuses freshly read URLs: a run whose read of
        # the ad's creative failed asked for the old, expired URL again, and its
        # 403 says nothing new about the file
        images = self.synced_image_ads()
        gone = images[0]
        where = f"meta_ad_id = '{gone['meta_ad_id']}'"
        self.svc.control({"media_status": {media_id(gone["url"]): 403}})
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual(res["failed"], 1)
        self.assertEqual(self.scalar(f"SELECT consecutive_403s FROM public.meta_ad_assets WHERE {where}"), "1")
        # two runs that cannot read the creative again: the stale URL is still 403
        self.svc.control({"graph_fail_path": "/" + gone["meta_ad_id"]})
        for _ in range(2):
            _, out = self.run_job("asset_download", {"max_videos": 0, "max_images": 40}, ok=False)
            self.assertIn("could not be read", out)
            row = self.one(f"SELECT status, consecutive_403s, error FROM public.meta_ad_assets WHERE {where}")
            self.assertEqual((row["status"], row["consecutive_403s"]), ("failed", 1))
            self.assertIn("could not be read again", row["error"])
        # the creative read again, the URL still refused: the second of the three
        self.svc.control({"graph_fail_path": None})
        _, out = self.run_job("asset_download", {"max_videos": 0, "max_images": 40}, ok=False)
        row = self.one(f"SELECT status, consecutive_403s FROM public.meta_ad_assets WHERE {where}")
        self.assertEqual((row["status"], row["consecutive_403s"]), ("failed", 2))

    def test_an_empty_content_type_is_read_from_the_bytes(self):
        # a CDN that sends "Content-Type:" with nothing after it says nothing about
        # the bytes, as a missing header does: they decide
        jpeg = svc_media.solid_jpeg(16, 8, 40)

        class Blank(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "")
                self.send_header("Content-Length", str(len(jpeg)))
                self.end_headers()
                self.wfile.write(jpeg)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Blank)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        images = self.synced_image_ads()
        self.scalar(f"UPDATE public.meta_ads_performance SET image_url = "
                    f"'http://127.0.0.1:{server.server_address[1]}/blank.jpg' WHERE NOT is_video")
        res, _ = self.run_job("asset_download", {"max_videos": 0, "max_images": 40})
        self.assertEqual((res["attempted"], res["downloaded"], res["failed"]), (len(images), len(images), 0))
        found = self.sql("SELECT status, sha256, mime_type, dimensions FROM public.meta_ad_assets")
        self.assertEqual(len(found), len(images))
        for row in found:
            self.assertEqual((row["status"], row["sha256"], row["mime_type"]),
                             ("downloaded", hashlib.sha256(jpeg).hexdigest(), "image/jpeg"))
            dims = row["dimensions"]
            self.assertEqual(json.loads(dims) if isinstance(dims, str) else dims, {"width": 16, "height": 8})

    def test_a_refused_token_on_a_video_is_not_a_lost_video(self):
        # GET /{video_id} refused for the token (code 190) says nothing about the
        # video: failed, tried again; only an unknown video (code 100) is gone
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        videos = self.sql("SELECT DISTINCT meta_ad_id, meta_video_id FROM public.meta_ads_performance "
                          "WHERE is_video AND meta_video_id IS NOT NULL ORDER BY meta_ad_id")
        self.assertGreaterEqual(len(videos), 2)
        refused, unknown = videos[0], videos[1]
        self.svc.control({"graph_fail_path": [
            {"path": f"/v21.0/{refused['meta_video_id']}", "status": 400, "code": 190},
            {"path": f"/v21.0/{unknown['meta_video_id']}", "status": 400, "code": 100},
        ]})
        self.run_job("asset_download", {"max_videos": 100, "max_images": 0})
        rows = {r["meta_ad_id"]: r for r in self.sql("SELECT * FROM public.meta_ad_assets")}
        row = rows[refused["meta_ad_id"]]
        self.assertEqual((row["status"], row["not_downloadable_reason"]), ("failed", None))
        self.assertIn("graph error 190", row["error"])
        row = rows[unknown["meta_ad_id"]]
        self.assertEqual((row["status"], row["not_downloadable_reason"]), ("not_downloadable", "video_not_found"))
        # the next run asks for the refused one again, and not for the unknown one
        self.svc.control({"graph_fail_path": None})
        self.run_job("asset_download", {"max_videos": 100, "max_images": 0})
        self.assertEqual(len(self.svc.log(f"/v21.0/{refused['meta_video_id']}")), 2)
        self.assertEqual(len(self.svc.log(f"/v21.0/{unknown['meta_video_id']}")), 1)
        self.assertNotEqual(self.one("SELECT status FROM public.meta_ad_assets WHERE meta_ad_id = "
                                     f"'{refused['meta_ad_id']}'")["status"], "failed")

    def test_asset_download_with_a_refused_token_fails_for_good(self):
        # code 190 on every request: a retry would meet it again (videos only:
        # the images' URLs are known without asking the Graph API)
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        _, out = self.run_job("asset_download", {"max_images": 0}, env=self.env({"META_ACCESS_TOKEN": "bad-token"}),
                              ok=False)
        self.assertIn("graph error 190", out)
        self.assertIn("the Graph API refused the token", out)
        self.assertEqual(self.count("sluice.scheduled_jobs", "job_type = 'asset_download' AND status = 'failed' "
                                    "AND attempts = 0"), 1, "a permanent failure ends the job without retries")
        self.assertEqual(self.dataset("ad_assets")["last_status"], "failed")
        self.assertNotIn("bad-token", out)

    def test_videos_without_a_source_are_not_downloadable(self):
        # this account's ads include videos Graph gives no source for ("Reels")
        self.setup_brand(account="act_4242424244")
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        self.run_job("asset_download", {})
        self.assertEqual(self.assert_sourceless_videos_marked(), 2)
        self.assertEqual(self.dataset("ad_assets")["last_status"], "completed")
        self.assert_store_consistent("meta_ad_assets")

    def test_asset_store_dedupes_and_reports_an_unwritable_store(self):
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        res, _ = self.run_job("asset_download", {})
        rows = self.assert_store_consistent("meta_ad_assets")
        self.assertGreater(res["downloaded"], 0)
        self.assertGreater(res["reused"], 0)  # ads sharing an image are stored once
        self.assertEqual(len(self.stored_files()), len({r["sha256"] for r in rows}))
        self.assertEqual(res["stored"] + res["reused"], res["downloaded"])
        # a store that cannot be written fails the job (it would fail every download)
        blocker = os.path.join(self.tmp, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        self.scalar("DELETE FROM public.meta_ad_assets")
        _, out = self.run_job("asset_download", {}, env=self.env({"SLUICE_ASSET_DIR": blocker}), ok=False)
        self.assertIn("asset store cannot be written", out)
        self.assertEqual(self.dataset("ad_assets")["last_status"], "failed")
        # the job's error is the problem itself, not a handler's file and line
        self.assertRegex(self.scalar("SELECT error_message FROM sluice.scheduled_job_runs "
                                     "WHERE job_type = 'asset_download' ORDER BY created_at DESC LIMIT 1"),
                         r"^the asset store cannot be written: ")

    def test_a_full_disk_fails_the_download_job_not_the_assets(self):
        # a download that could not be written (ENOSPC) was recorded as that
        # asset's failed download, and the run went on to fail every other
        # the same way, then completed; the store is what failed
        self.setup_brand()
        self.run_job("meta_sync", {"download_max_videos": 0, "download_max_images": 0})
        full = os.path.join(self.tmp, "full")
        os.makedirs(full)
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", full],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            self.skipTest(f"cannot mount a small file system here: {mount.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", full], capture_output=True)
        _, out = self.run_job("asset_download", {}, env=self.env({"SLUICE_ASSET_DIR": full}), ok=False)
        self.assertIn("the asset store cannot be written: cannot store the response: "
                      "No space left on device", out)
        self.assertEqual(self.dataset("ad_assets")["last_status"], "failed")


if __name__ == "__main__":
    harness.main()
