-- reddit.lua — the reddit_scrape pipeline (handlers/reddit_scrape.lua is its
-- declaration): scrape posts through the Apify Reddit actor, filter them by
-- engagement, score them with the LLM for relevance, signal and buyer intent,
-- keep the top share by combined score, extract quotes into the six sentiment
-- categories, store the run, posts and quotes, and optionally merge the quotes
-- into a persona.
--
-- Every paid step is checkpointed on the job: the Apify run (apify.run_actor)
-- and each post's LLM results per stage, so a retry neither buys the scrape
-- again nor re-asks the LLM about posts it already scored.

local apify = require("sluice.apify")
local clean = require("sluice.clean")
local llm = require("sluice.llm")
local plural = require("sluice.plural")
local refuse = require("sluice.refuse")
local rows = require("sluice.rows")

local M = {}

-- What of a stage's replies could not be parsed, when none could: "none of the
-- 3 relevance replies could be parsed", "the one relevance reply could not be
-- parsed".
local function none_parsed(n, stage)
  if n == 1 then return ("the one %s reply could not be parsed"):format(stage) end
  return ("none of the %d %s replies could be parsed"):format(n, stage)
end

M.ACTOR = "fatihtahta~reddit-scraper-search-fast"
M.ACTOR_TIMEOUT = 600          -- seconds (the seed's)
M.ACTOR_MEMORY = 1024          -- MB
M.PRICE_PER_1K = 1.50          -- USD per 1,000 items, when Apify does not say
M.SCORE_BATCH = 10
M.EXTRACT_BATCH = 5
M.SCORE_BODY_CHARS = 500
M.EXTRACT_BODY_CHARS = 1500
M.WEIGHTS = { relevance = 0.4, signal = 0.3, intent = 0.3 }
M.CATEGORIES = { "PAIN_POINT", "DESIRED_OUTCOME", "BUYING_OBJECTION", "FAILED_SOLUTION",
                 "DESIRED_FEATURE", "FAMILIAR_SOLUTION" }
local CATEGORY = {}
for _, c in ipairs(M.CATEGORIES) do CATEGORY[c] = true end
local SUBTYPE = { emotional = true, social = true, functional = true }

local null = sluice.null

---------------------------------------------------------------- small helpers

local function is_str(v) return type(v) == "string" and v ~= "" end
local function num(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then return tonumber(v) end
  return nil
end
local function int(v)
  local n = num(v)
  if not n or n ~= n or n == math.huge or n == -math.huge then return nil end
  return math.tointeger(math.floor(n))
end
local function orNull(v) if v == nil then return null end return v end

-- The first n characters (code points) of s; bytes if s is not valid UTF-8.
function M.prefix(s, n)
  if #s <= n then return s end
  local ok, len = pcall(utf8.len, s)
  if not ok or not len then return s:sub(1, n) end
  if len <= n then return s end
  return s:sub(1, utf8.offset(s, n + 1) - 1)
end

-- created_utc: epoch seconds (integer or float; milliseconds and finer are
-- told by their magnitude, clean.epoch) or an ISO string → ISO 8601 UTC, and a
-- note when the value was scaled; nil, why when it is no date from 1970 to 2100
-- (os.date raised for some, and Postgres refuses a year past 294276).
function M.timestamp(v)
  local n = num(v)
  if type(v) == "number" or (n and tostring(v):match("^%s*%d+%.?%d*%s*$")) then
    local secs, how = clean.epoch(n)
    if not secs then return nil, how end
    return os.date("!%Y-%m-%dT%H:%M:%SZ", secs), how and ("%s read as %s"):format(v, how)
  end
  if type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d") then return v end
  return nil
end

---------------------------------------------------------------- the actor

-- The actor input for the job's parameters (docs/job-types.md, reddit_scrape, step 1).
function M.actor_input(p)
  local input = {
    queries = p.search_queries, maxPosts = p.max_posts, sort = "relevance",
    timeframe = p.timeframe, includeNsfw = false, scrapeComments = true, maxComments = 50,
  }
  local subs = p.subreddits
  if type(subs) == "table" and #subs > 0 then
    input.subredditName = subs[1]
    if #subs > 1 then
      local rest = {}
      for i = 2, #subs do rest[#rest + 1] = subs[i] end
      input.subredditKeywords = rest
    end
  end
  return input
end

-- The actor's mixed dataset → posts (deduplicated by id, in dataset order),
-- the number of comments (scraped, not used further, as in the seed), notes
-- naming the posts whose created_utc was scaled or left empty, and the number
-- of items that are neither (no post id, not a comment).
function M.posts_from_items(items)
  local posts, seen, comments, notes, unreadable = {}, {}, 0, {}, 0
  for _, it in ipairs(items) do
    if type(it) ~= "table" then
      unreadable = unreadable + 1
    else
      local kind = it.kind
      if kind == "comment" or (kind == nil and it.postId ~= nil) then
        comments = comments + 1
      elseif (kind == "post" or kind == nil) and it.id ~= nil and it.id ~= null then
        local id = tostring(it.id)
        if not seen[id] then
          seen[id] = true
          local body = is_str(it.body) and it.body or (is_str(it.selftext) and it.selftext) or ""
          local created, cnote = M.timestamp(it.created_utc)
          if cnote then
            notes[#notes + 1] = ("post %s: created_utc %s"):format(id, created and cnote or ("left empty: " .. cnote))
          end
          posts[#posts + 1] = {
            id = id, subreddit = is_str(it.subreddit) and it.subreddit or nil,
            title = is_str(it.title) and it.title or "", body = body,
            author = is_str(it.author) and it.author or nil, url = is_str(it.url) and it.url or nil,
            score = int(it.score) or 0, upvote_ratio = num(it.upvote_ratio),
            num_comments = int(it.num_comments) or 0, created_utc = created,
            position = #posts + 1,
          }
        end
      else
        unreadable = unreadable + 1
      end
    end
  end
  return posts, comments, notes, unreadable
end

function M.engagement_filter(posts, min_upvotes, min_comments)
  local out = {}
  for _, p in ipairs(posts) do
    if p.score >= min_upvotes and p.num_comments >= min_comments then out[#out + 1] = p end
  end
  return out
end

---------------------------------------------------------------- prompts

local INSTRUCTIONS = {
  relevance = "Rate how relevant each post is to BOTH the target persona and the topic. Be strict: "
    .. "give 0.7 or more only when a post is clearly relevant to both.",
  signal = "Rate each post's signal versus noise: first-hand experience, pain, recommendations and "
    .. "product comparisons are signal; jokes, spam, low-effort and off-topic posts are noise.",
  intent = "Rate each post's buyer sophistication: past purchases, brand comparisons, feature needs, "
    .. "budget, timeline and DIY workarounds score high; idle curiosity scores low.",
}

-- Messages for a scoring stage. The `STAGE:` and `POSTS:` lines mark the
-- prompt's parts (a loopback fixture reads them; real models just see text).
function M.score_messages(stage, batch, ctx)
  local posts = {}
  for i, p in ipairs(batch) do
    posts[i] = { index = i - 1, title = p.title, body = M.prefix(p.body, M.SCORE_BODY_CHARS) }
  end
  local system = table.concat({
    "You score Reddit posts for customer research.",
    "STAGE: " .. stage,
    INSTRUCTIONS[stage],
    "Scores are numbers from 0.0 to 1.0.",
    'Reply with JSON only: {"results": [{"index": <the post\'s index>, "score": <0.0-1.0>, '
      .. '"reasoning": "<one sentence>"}]}, one element per post, in the order given.',
  }, "\n")
  local user = table.concat({
    "Target persona: " .. (ctx.persona or "not specified"),
    "Topic: " .. (ctx.topic or "not specified"),
    "POSTS:",
    sluice.json.encode(posts),
  }, "\n")
  return { { role = "system", content = system }, { role = "user", content = user } }
end

function M.extract_messages(batch, ctx)
  local posts = {}
  for i, p in ipairs(batch) do
    posts[i] = { index = p.extract_index, reddit_id = p.id, subreddit = p.subreddit or "",
                 title = p.title, body = M.prefix(p.body, M.EXTRACT_BODY_CHARS) }
  end
  local system = table.concat({
    "You extract customer-research quotes from Reddit posts.",
    "STAGE: extract",
    "Pull verbatim quotes (exact substrings of the posts) into six categories: PAIN_POINT, "
      .. "DESIRED_OUTCOME, BUYING_OBJECTION, FAILED_SOLUTION, DESIRED_FEATURE, FAMILIAR_SOLUTION. "
      .. "Two to five per category where the posts have them; quality over quantity.",
    'Reply with JSON only: an object with those six keys, each a list of {"quote": "...", '
      .. '"post_index": <the post\'s index>, "source_type": "post_body", "subtype": '
      .. '"emotional"|"social"|"functional", "confidence": <0.0-1.0>, "reasoning": "..."}.',
  }, "\n")
  local lines = {}
  if ctx.brand then lines[#lines + 1] = "Brand: " .. ctx.brand end
  if ctx.product then lines[#lines + 1] = "Product: " .. ctx.product end
  lines[#lines + 1] = "Target persona: " .. (ctx.persona or "not specified")
  lines[#lines + 1] = "Topic: " .. (ctx.topic or "not specified")
  lines[#lines + 1] = "POSTS:"
  lines[#lines + 1] = sluice.json.encode(posts)
  return { { role = "system", content = system }, { role = "user", content = table.concat(lines, "\n") } }
end

---------------------------------------------------------------- replies

local function is_list(t)
  return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end

-- A scoring reply → its list of elements, or nil, why (for llm.chat_json's
-- validate: a reply of another shape is asked again).
function M.score_list(v)
  if is_list(v) then return v end
  if type(v) == "table" then
    for _, k in ipairs({ "results", "scores", "posts" }) do
      if is_list(v[k]) then return v[k] end
    end
  end
  return nil, 'expected {"results": [...]} or a JSON array of scores'
end

-- Elements → one {score, reasoning} per post of the batch. Elements are matched
-- by their `index` when every one names a distinct post of the batch, else by
-- position (the seed's rule); missing ones score 0, extra ones are dropped.
function M.match_scores(list, n)
  local by_index, ok = {}, #list > 0
  for _, e in ipairs(list) do
    local i = type(e) == "table" and int(e.index)
    if not i or i < 0 or i >= n or by_index[i] then ok = false break end
    by_index[i] = e
  end
  local out = {}
  for i = 1, n do
    local e = ok and by_index[i - 1] or (not ok and list[i]) or nil
    local s = type(e) == "table" and num(e.score)
    if type(e) ~= "table" then
      out[i] = { score = 0.0, reasoning = "Missing score" }
    elseif not s or s ~= s then
      out[i] = { score = 0.0, reasoning = "Missing score" }
    else
      -- without NUL: the scores are checkpointed as JSON, which cannot hold it
      local why = clean.text(e.reasoning)
      out[i] = { score = math.max(0.0, math.min(1.0, s)) + 0.0, reasoning = is_str(why) and why or "" }
    end
  end
  return out
end

-- An extraction reply → quotes {category, quote, post (the post), source_type,
-- subtype, confidence, reasoning}, or nil, why.
function M.parse_quotes(v, batch)
  if type(v) ~= "table" or (v[1] ~= nil) then return nil, "expected a JSON object keyed by category" end
  local by_index = {}
  for _, p in ipairs(batch) do by_index[p.extract_index] = p end
  local out = {}
  for _, cat in ipairs(M.CATEGORIES) do
    local list = v[cat]
    if type(list) == "table" then
      for _, q in ipairs(list) do
        local text = type(q) == "table" and q.quote
        if is_str(text) and text:match("%S") then
          local post = by_index[int(q.post_index) or -1]
          if not post and #batch == 1 then post = batch[1] end
          if post then
            local sub = is_str(q.subtype) and q.subtype:lower() or nil
            local conf = num(q.confidence)
            out[#out + 1] = {
              category = cat, quote = text:match("^%s*(.-)%s*$"), reddit_id = post.id,
              source_type = is_str(q.source_type) and q.source_type or "post_body",
              subtype = SUBTYPE[sub] and sub or nil,
              confidence = conf and math.max(0.0, math.min(1.0, conf)) or 0.8,
              reasoning = is_str(q.reasoning) and q.reasoning or nil,
            }
          end
        end
      end
    end
  end
  return out
end

---------------------------------------------------------------- LLM stages

-- Asks the LLM about every batch, at most st.llm.concurrency at once. ask(batch)
-- → value, info | nil, err, kind. Returns per-batch outcomes {value} or {err,
-- kind}, and, when a batch failed for any reason but an unparseable reply, a
-- function raising that failure (permanent for a refused key, quota or bad
-- request): the caller checkpoints what the other batches answered, which was
-- paid for, before it raises.
local function ask_all(st, batches, ask)
  local results = sluice.map(batches, function(batch)
    local value, info, kind, finfo = ask(batch)
    -- every reply counts, a re-asked unusable one too: each was paid for
    local used = value ~= nil and info or finfo
    if type(used) == "table" then
      st.calls = st.calls + (used.attempts or 0)
      if used.usage then st.add_usage(used.usage) end
    end
    if value == nil then return { err = info, kind = kind } end
    return { value = value }
  end, { concurrency = st.llm.concurrency })
  for i = 1, #batches do
    local r = results[i]
    if r.err and r.kind ~= "parse" then
      return results, function()
        if llm.permanent(r.kind) then error(sluice.permanent(r.err), 0) end
        error(r.err, 0)
      end
    end
  end
  return results
end

local function all_failed(results)
  if #results == 0 then return false end
  for _, r in ipairs(results) do if r.value ~= nil then return false end end
  return true
end

-- Scores posts for one stage: sets p[stage] and p[stage .. "_reasoning"].
-- Posts scored by an earlier attempt (the checkpoint) are not asked again.
function M.score_stage(job, st, stage, posts)
  local cache = st.cache[stage]
  local todo = {}
  for _, p in ipairs(posts) do
    local c = cache[p.id]
    if c then
      p[stage], p[stage .. "_reasoning"] = c[1], c[2]
    else
      todo[#todo + 1] = p
    end
  end
  local batches = llm.batches(todo, M.SCORE_BATCH)
  local results, fail = ask_all(st, batches, function(batch)
    return llm.chat_json(M.score_messages(stage, batch, st.ctx),
                         { config = st.llm, validate = M.score_list })
  end)
  local parse_errors = 0
  for i, batch in ipairs(batches) do
    local r = results[i]
    if r.value ~= nil then
      local scores = M.match_scores(r.value, #batch)
      for j, p in ipairs(batch) do
        p[stage], p[stage .. "_reasoning"] = scores[j].score, scores[j].reasoning
        cache[p.id] = { scores[j].score, scores[j].reasoning }
      end
    elseif not fail then -- (with fail, the stage raises below)
      parse_errors = parse_errors + 1
      job.log("%s: batch %d of %d could not be parsed (%s): its %s scored 0",
              stage, i, #batches, r.err, plural(#batch, "post"))
      for _, p in ipairs(batch) do p[stage], p[stage .. "_reasoning"] = 0.0, "Parse error" end
    end
  end
  st.parse_errors = st.parse_errors + parse_errors
  if #batches > 0 then job.checkpoint("reddit_llm", st.cache) end
  if fail then fail() end
  if all_failed(results) then
    error(("llm: %s (last: %s)"):format(none_parsed(#batches, stage),
          results[#results].err), 0)
  end
  return #batches, parse_errors, #posts - #todo
end

function M.keep(posts, stage, threshold)
  local out = {}
  for _, p in ipairs(posts) do
    if p[stage] >= threshold then out[#out + 1] = p end
  end
  return out
end

-- combined = 0.4·relevance + 0.3·signal + 0.3·intent; the top
-- max(1, floor(n·share)) posts by it (ties keep scrape order).
function M.select_top(posts, share)
  for _, p in ipairs(posts) do
    p.combined = M.WEIGHTS.relevance * p.relevance + M.WEIGHTS.signal * p.signal
      + M.WEIGHTS.intent * p.intent
  end
  local sorted = {}
  for i, p in ipairs(posts) do sorted[i] = p end
  table.sort(sorted, function(a, b)
    if a.combined ~= b.combined then return a.combined > b.combined end
    return a.position < b.position
  end)
  if #sorted == 0 then return sorted end
  local n = math.max(1, math.floor(#sorted * share))
  local top = {}
  for i = 1, math.min(n, #sorted) do top[i] = sorted[i]; sorted[i].selected = true end
  return top
end

-- Quotes from the selected posts, batches of 5.
function M.extract(job, st, top)
  local cache = st.cache.extract
  local quotes, todo = {}, {}
  for i, p in ipairs(top) do
    p.extract_index = i - 1
    local c = cache[p.id]
    if c then
      for _, q in ipairs(c) do quotes[#quotes + 1] = q end
    else
      todo[#todo + 1] = p
    end
  end
  local batches = llm.batches(todo, M.EXTRACT_BATCH)
  local results, fail = ask_all(st, batches, function(batch)
    return llm.chat_json(M.extract_messages(batch, st.ctx), {
      config = st.llm,
      validate = function(v)
        if type(v) ~= "table" or v[1] ~= nil then return nil, "expected a JSON object keyed by category" end
        return v
      end,
    })
  end)
  local parse_errors = 0
  for i, batch in ipairs(batches) do
    local r = results[i]
    if r.value == nil then
      if not fail then -- (with fail, extraction raises below)
        parse_errors = parse_errors + 1
        job.log("extract: batch %d of %d could not be parsed (%s): no quotes from its %s",
                i, #batches, r.err, plural(#batch, "post"))
      end
    else
      local got = M.parse_quotes(r.value, batch) or {}
      for _, p in ipairs(batch) do cache[p.id] = setmetatable({}, nil) end
      for _, raw in ipairs(got) do
        -- without NUL from here on: the quotes are checkpointed as JSON, which
        -- cannot hold it, and two quotes that differ only by one are one quote
        local q, _, note = clean.strip(raw, ("quote of post %s (%s)"):format(raw.reddit_id, raw.category))
        if note then job.log(note) end
        q.quote = q.quote:match("^%s*(.-)%s*$")
        if q.quote ~= "" then
          quotes[#quotes + 1] = q
          local c = cache[q.reddit_id]
          c[#c + 1] = q
        end
      end
    end
  end
  st.parse_errors = st.parse_errors + parse_errors
  if #batches > 0 then job.checkpoint("reddit_llm", st.cache) end
  if fail then fail() end
  if all_failed(results) then
    error(("llm: %s (last: %s)"):format(none_parsed(#batches, "extraction"),
          results[#results].err), 0)
  end
  return quotes, #batches, parse_errors
end

---------------------------------------------------------------- storage

local db = rows.query

local function jsonarray(list)
  if #list == 0 then return "[]" end
  return sluice.json.encode(list)
end

local RUN_COLUMNS = {
  status = true, current_step = true, error = true, apify_run_id = true, posts_scraped = true,
  comments_scraped = true, posts_after_engagement = true, posts_after_relevance = true,
  posts_after_signal = true, posts_top_selected = true, quotes_extracted = true, quotes_synced = true,
  llm_calls = true, llm_parse_errors = true, apify_cost_estimate = true, llm_cost_estimate = true,
}

function M.update_run(run_id, fields)
  local sets, args = {}, { run_id }
  for k, v in pairs(fields) do
    if not RUN_COLUMNS[k] then error("reddit.update_run: unknown column " .. k, 2) end
    args[#args + 1] = v
    sets[#sets + 1] = ("%s = $%d"):format(k, #args)
  end
  if fields.status == "completed" or fields.status == "failed" then sets[#sets + 1] = "completed_at = now()" end
  db(("UPDATE public.reddit_scrape_runs SET %s WHERE id = $1"):format(table.concat(sets, ", ")),
     table.unpack(args, 1, #args))
end

-- The run row of this job (its retries reuse it): created or reset to running.
function M.start_run(job, ctx)
  local p = job.params
  local found = db([[
    INSERT INTO public.reddit_scrape_runs
      (job_id, job_run_id, brand_id, persona_id, search_queries, subreddits, timeframe, sort_by,
       max_posts, min_upvotes, min_comments, relevance_threshold, signal_threshold, top_percentile,
       persona_context, topic_context, brand_context, status, current_step)
    VALUES ($1, $2, $3, $4,
            ARRAY(SELECT jsonb_array_elements_text($5::jsonb)),
            CASE WHEN $6::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text($6::jsonb)) END,
            $7, 'relevance', $8, $9, $10, $11, $12, $13, $14, $15, $16, 'running', 'scraping')
    ON CONFLICT (job_id) DO UPDATE SET job_run_id = excluded.job_run_id, status = 'running',
      current_step = 'scraping', error = NULL, completed_at = NULL
    RETURNING id]],
    orNull(job.id), orNull(job.run_id), orNull(job.brand_id), orNull(p.persona_id),
    jsonarray(p.search_queries), p.subreddits and jsonarray(p.subreddits) or null,
    p.timeframe, p.max_posts, p.min_upvotes, p.min_comments, p.relevance_threshold,
    p.signal_threshold, p.top_percentile, orNull(p.persona_context), orNull(p.topic_context),
    orNull(ctx.brand))
  return found[1].id
end

-- Upserts the scored posts, in the run's transaction; returns how many rows were
-- written and the posts the database refused (skipped and logged, see rows.lua).
-- Texts are stored without NUL (Postgres refuses it), each cleaned post noted.
local function save_posts(job, run_id, brand_id, posts, notes)
  if #posts == 0 then return 0, {} end
  local list = {}
  local function key(r) return "post " .. r.reddit_id end
  for i, p in ipairs(posts) do
    local row, _, note = clean.strip({
      reddit_id = p.id, subreddit = p.subreddit, title = p.title, body = p.body, author = p.author,
      url = p.url, score = p.score, upvote_ratio = p.upvote_ratio, num_comments = p.num_comments,
      created_utc = p.created_utc, relevance_score = p.relevance, relevance_reasoning = p.relevance_reasoning,
      signal_score = p.signal, signal_reasoning = p.signal_reasoning, intent_score = p.intent,
      intent_reasoning = p.intent_reasoning, combined_score = p.combined, selected = p.selected == true,
    }, key)
    notes[#notes + 1] = note
    list[i] = row
  end
  local res, skipped = rows.store(job, {
    what = "reddit_posts", rows = list, savepoint = true, args = table.pack(run_id, brand_id),
    key = key,
    sql = [[
    INSERT INTO public.reddit_posts AS t
      (run_id, brand_id, reddit_id, subreddit, title, body, author, url, score, upvote_ratio,
       num_comments, created_utc, relevance_score, relevance_reasoning, signal_score, signal_reasoning,
       intent_score, intent_reasoning, combined_score, selected)
    SELECT $1, $2::uuid, x.reddit_id, x.subreddit, x.title, x.body, x.author, x.url, x.score,
           x.upvote_ratio, x.num_comments, x.created_utc, x.relevance_score, x.relevance_reasoning,
           x.signal_score, x.signal_reasoning, x.intent_score, x.intent_reasoning, x.combined_score,
           coalesce(x.selected, false)
    FROM jsonb_to_recordset($3::jsonb) AS x(
      reddit_id text, subreddit text, title text, body text, author text, url text, score integer,
      upvote_ratio double precision, num_comments integer, created_utc timestamptz,
      relevance_score double precision, relevance_reasoning text, signal_score double precision,
      signal_reasoning text, intent_score double precision, intent_reasoning text,
      combined_score double precision, selected boolean)
    ON CONFLICT (brand_id, reddit_id) DO UPDATE SET
      run_id = excluded.run_id, subreddit = excluded.subreddit, title = excluded.title,
      body = excluded.body, author = excluded.author, url = excluded.url, score = excluded.score,
      upvote_ratio = excluded.upvote_ratio, num_comments = excluded.num_comments,
      created_utc = excluded.created_utc, relevance_score = excluded.relevance_score,
      relevance_reasoning = excluded.relevance_reasoning, signal_score = excluded.signal_score,
      signal_reasoning = excluded.signal_reasoning, intent_score = excluded.intent_score,
      intent_reasoning = excluded.intent_reasoning, combined_score = excluded.combined_score,
      selected = excluded.selected, updated_at = now()
    RETURNING t.id]],
  })
  return #res, skipped
end

-- Inserts the quotes (one per post, category and text), in the run's
-- transaction; returns the rows written, how many of them are new, and the quotes
-- the database refused. A quote of a post that was not stored has no row to
-- hang on, and is left out.
local function save_quotes(job, run_id, brand_id, quotes, notes)
  if #quotes == 0 then return {}, 0, {} end
  local list, seen = {}, {}
  local function key(r) return ("quote of post %s (%s)"):format(r.reddit_id, r.sentiment_category) end
  for _, q in ipairs(quotes) do
    local k = q.reddit_id .. "\31" .. q.category .. "\31" .. q.quote
    if not seen[k] then
      seen[k] = true
      local row, _, note = clean.strip({
        reddit_id = q.reddit_id, quote_text = q.quote, source_type = q.source_type,
        sentiment_category = q.category, sentiment_subtype = q.subtype,
        confidence_score = q.confidence, extraction_reasoning = q.reasoning,
      }, key)
      notes[#notes + 1] = note
      list[#list + 1] = row
    end
  end
  local res, skipped = rows.store(job, {
    what = "reddit_sentiment_quotes", rows = list, savepoint = true,
    args = table.pack(run_id, brand_id),
    key = key,
    sql = [[
    INSERT INTO public.reddit_sentiment_quotes AS t
      (run_id, brand_id, post_id, quote_text, source_type, sentiment_category, sentiment_subtype,
       confidence_score, extraction_reasoning)
    SELECT $1, $2::uuid, p.id, x.quote_text, coalesce(x.source_type, 'post_body'), x.sentiment_category,
           x.sentiment_subtype, x.confidence_score, x.extraction_reasoning
    FROM jsonb_to_recordset($3::jsonb) AS x(reddit_id text, quote_text text, source_type text,
      sentiment_category text, sentiment_subtype text, confidence_score double precision,
      extraction_reasoning text)
    JOIN public.reddit_posts p ON p.reddit_id = x.reddit_id AND p.brand_id IS NOT DISTINCT FROM $2::uuid
    ON CONFLICT (post_id, sentiment_category, quote_text) DO UPDATE SET
      run_id = excluded.run_id, source_type = excluded.source_type,
      sentiment_subtype = excluded.sentiment_subtype, confidence_score = excluded.confidence_score,
      extraction_reasoning = excluded.extraction_reasoning
    RETURNING (xmax = 0) AS inserted, t.sentiment_category AS category, t.quote_text AS quote,
              t.sentiment_subtype AS subtype]],
  })
  local new = 0
  for _, r in ipairs(res) do if r.inserted then new = new + 1 end end
  return res, new, skipped
end

-- Appends the stored quotes (save_quotes' rows: cleaned, and none of a post or
-- quote the database refused) to the persona; returns how many were new there.
local function sync_persona(run_id, persona_id, stored)
  local list = {}
  for _, q in ipairs(stored) do
    list[#list + 1] = { category = q.category, quote = q.quote,
                        subtype = q.subtype ~= null and q.subtype or nil }
  end
  local found = db("SELECT sluice.sync_persona_quotes($1, $2::jsonb) AS n", persona_id, jsonarray(list))
  db("UPDATE public.reddit_sentiment_quotes SET synced_to_persona = true WHERE run_id = $1", run_id)
  return found[1].n
end

---------------------------------------------------------------- the pipeline

local function counts_by_category(quotes)
  local n, parts = {}, {}
  for _, q in ipairs(quotes) do n[q.category] = (n[q.category] or 0) + 1 end
  for _, c in ipairs(M.CATEGORIES) do
    if n[c] then parts[#parts + 1] = ("%s %d"):format(c, n[c]) end
  end
  return #parts > 0 and table.concat(parts, ", ") or "none"
end

-- Runs the whole pipeline for the job; returns the result table. Raises on
-- failure (after recording it on the run row).
function M.run(job)
  local p = job.params
  -- credentials first: nothing is bought before both services are usable
  local _, aerr = apify.config()
  if aerr then error(sluice.permanent(aerr), 0) end
  local llm_cfg, lerr = llm.config()
  if not llm_cfg then error(sluice.permanent(lerr), 0) end

  local ctx = { persona = p.persona_context, topic = p.topic_context }
  if job.brand_id then
    local found = db("SELECT name FROM sluice.brands WHERE id = $1", job.brand_id)
    ctx.brand = found[1] and found[1].name or nil
  end
  if p.persona_id then
    local found = db("SELECT name, description, brand_id FROM public.personas_4d WHERE id = $1", p.persona_id)
    -- input that rules the run out leaves reddit_data as it was (sluice.refuse)
    if not found[1] then
      refuse(job, { "reddit_data" }, ("persona_id %s: no such persona in personas_4d (add one with "
        .. "SELECT sluice.add_persona(brand, name))"):format(p.persona_id))
    end
    -- the persona must be the job's brand's (a job without a brand: a persona
    -- without one), or its research and quotes would land in another brand's persona
    local pbrand = type(found[1].brand_id) == "string" and found[1].brand_id or nil
    if pbrand ~= job.brand_id then
      local why = pbrand == nil and "has no brand, this job has one"
        or job.brand_id == nil and "belongs to a brand, this job has none"
        or "belongs to another brand"
      refuse(job, { "reddit_data" }, ("persona %s (%s) %s"):format(found[1].name, p.persona_id, why))
    end
    if not ctx.persona then
      local d = found[1].description
      ctx.persona = found[1].name .. ((type(d) == "string" and d ~= "") and (" — " .. d) or "")
    end
  end
  if p.auto_sync_to_persona and not p.persona_id then
    job.log("auto_sync_to_persona is set but persona_id is not: quotes will not be synced")
  end

  -- the key itself (a refused one is found here, not after the scrape is bought)
  local _, kerr = llm.check(llm_cfg)
  if kerr then error(sluice.permanent(kerr), 0) end

  local run_id = M.start_run(job, ctx)
  local cached = job.checkpoint("reddit_llm")
  local st = {
    llm = llm_cfg, ctx = ctx, calls = 0, parse_errors = 0,
    usage = { prompt_tokens = 0, completion_tokens = 0 },
    cache = type(cached) == "table" and cached or {},
  }
  for _, k in ipairs({ "relevance", "signal", "intent", "extract" }) do
    if type(st.cache[k]) ~= "table" then st.cache[k] = {} end
  end
  function st.add_usage(u)
    st.usage.prompt_tokens = st.usage.prompt_tokens + (u.prompt_tokens or 0)
    st.usage.completion_tokens = st.usage.completion_tokens + (u.completion_tokens or 0)
  end

  local step = "scraping"
  local ok, result = pcall(function()
    -- 1. scrape
    local items, arun = apify.run_actor(job, "reddit_scrape", M.ACTOR, M.actor_input(p),
                                        { timeout = M.ACTOR_TIMEOUT, memory = M.ACTOR_MEMORY })
    local posts, ncomments, pnotes, unreadable = M.posts_from_items(items)
    if #posts == 0 and unreadable > 0 then
      -- items came, and no post among them: output this code cannot read (the
      -- actor changed its format, say), not a search without results. Stored as
      -- 0 posts, the research would look done and fresh; a retry reads the same run
      error(sluice.permanent(("no post among the %s run %s returned (%s, %s without a post id): its "
        .. "output cannot be read; the first item's keys: %s")
        :format(plural(#items, "item"), tostring(arun.id), plural(ncomments, "comment"),
                plural(unreadable, "item"), apify.item_keys(items))), 0)
    end
    clean.notes(job, pnotes, "post")
    local apify_usd = tonumber(arun.usageTotalUsd) or #items * M.PRICE_PER_1K / 1000
    job.log("scraped %s and %s (%s, $%.4f)", plural(#posts, "post"), plural(ncomments, "comment"),
            plural(#items, "item"), apify_usd)

    -- 2. engagement
    local engaged = M.engagement_filter(posts, p.min_upvotes, p.min_comments)
    job.log("engagement filter (score >= %d and comments >= %d): %d of %s kept",
            p.min_upvotes, p.min_comments, #engaged, plural(#posts, "post"))
    step = "relevance"
    M.update_run(run_id, { current_step = step, apify_run_id = arun.id, posts_scraped = #posts,
                           comments_scraped = ncomments, posts_after_engagement = #engaged,
                           apify_cost_estimate = apify_usd })

    -- 3-5. LLM scoring
    local function stage(name, list, threshold)
      step = name
      local nb, perr, reused = M.score_stage(job, st, name, list)
      local kept = threshold and M.keep(list, name, threshold) or list
      job.log("%s%s: %d of %s %s (%s, %s%s)", name,
              threshold and (" (>= %g)"):format(threshold) or "", #kept, plural(#list, "post"),
              threshold and "kept" or "scored", plural(nb, "batch", "batches"), plural(perr, "parse error"),
              reused > 0 and (", %d scored by an earlier attempt"):format(reused) or "")
      return kept
    end
    local relevant = stage("relevance", engaged, p.relevance_threshold)
    M.update_run(run_id, { current_step = "signal", posts_after_relevance = #relevant })
    local signal = stage("signal", relevant, p.signal_threshold)
    M.update_run(run_id, { current_step = "intent", posts_after_signal = #signal })
    stage("intent", signal, nil)

    -- 6. top share
    local top = M.select_top(signal, p.top_percentile)
    job.log("top %g%%: %d of %s selected%s", p.top_percentile * 100, #top, plural(#signal, "post"),
            #top > 0 and (" (combined score %.3f to %.3f)"):format(top[#top].combined, top[1].combined) or "")
    step = "extract"
    M.update_run(run_id, { current_step = step, posts_top_selected = #top })

    -- 7. quotes
    local quotes, nb, perr = M.extract(job, st, top)
    job.log("extract: %s from %s (%s, %s): %s", plural(#quotes, "quote"), plural(#top, "post"),
            plural(nb, "batch", "batches"), plural(perr, "parse error"), counts_by_category(quotes))

    -- 8. store (one transaction: the run's posts, quotes and persona change land together)
    step = "saving"
    local llm_usd = llm.cost(st.usage, llm_cfg)
    local notes = {}
    local stored = assert(sluice.db.transaction(function()
      local nposts, skipped_posts = save_posts(job, run_id, job.brand_id, engaged, notes)
      local saved, new_quotes, skipped_quotes = save_quotes(job, run_id, job.brand_id, quotes, notes)
      local synced = 0
      if p.auto_sync_to_persona and p.persona_id then
        synced = sync_persona(run_id, p.persona_id, saved)
      end
      M.update_run(run_id, {
        status = "completed", current_step = "done", quotes_extracted = #quotes,
        quotes_synced = synced, llm_calls = st.calls, llm_parse_errors = st.parse_errors,
        llm_cost_estimate = llm_usd,
      })
      return { posts = nposts, quotes = #saved, new_quotes = new_quotes, synced = synced,
               skipped = #skipped_posts + #skipped_quotes }
    end))
    clean.notes(job, notes, "post or quote", "posts and quotes")
    job.log("stored run %s: %s, %s (%d new)%s", run_id, plural(stored.posts, "post"),
            plural(stored.quotes, "quote"), stored.new_quotes,
            stored.skipped == 1 and "; 1 row the database refused was skipped"
              or stored.skipped > 1 and ("; %d rows the database refused were skipped"):format(stored.skipped)
              or "")
    if p.auto_sync_to_persona and p.persona_id then
      job.log("persona %s: %s synced (%d already there)", p.persona_id, plural(stored.synced, "new quote"),
              stored.quotes - stored.synced)
    end
    return {
      status = "success", run_id = run_id, apify_run_id = arun.id,
      posts_scraped = #posts, comments_scraped = ncomments, posts_after_engagement = #engaged,
      posts_after_relevance = #relevant, posts_after_signal = #signal, posts_top_selected = #top,
      quotes_extracted = #quotes, quotes_new = stored.new_quotes, quotes_synced = stored.synced,
      llm_calls = st.calls, llm_parse_errors = st.parse_errors,
      apify_cost_estimate = apify_usd, llm_cost_estimate = llm_usd, records = stored.posts,
      rows_skipped = stored.skipped,
    }
  end)
  if not ok then
    local msg = type(result) == "table" and result.message or tostring(result)
    pcall(M.update_run, run_id, { status = "failed", error = ("%s: %s"):format(step, msg),
                                  llm_calls = st.calls, llm_parse_errors = st.parse_errors,
                                  llm_cost_estimate = llm.cost(st.usage, llm_cfg) })
    error(result, 0)
  end
  return result
end

return M
