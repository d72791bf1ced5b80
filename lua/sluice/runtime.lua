-- runtime.lua — the trusted half of the Lua runtime, run once per process by
-- src/lua_host.c with the C drivers. It builds:
--   * the sandbox every handler, library and script runs in (an allow-list of
--     read-only globals; reading or writing an unknown global raises),
--   * the public `sluice` API handlers see,
--   * the handler registry (load, check, install), parameter validation, and
--   * execute(), the body of every run's main coroutine.
-- Handlers never see this file's environment.

local drivers, read_module = ...
local core, dbd, cjson_lib = drivers.core, drivers.db, drivers.cjson

-- Pattern matching with a step budget (src/lua_pattern.c) replaces the
-- standard library's find, match, gmatch and gsub before anything uses them:
-- the `string` table is also the string metatable's __index and what every
-- sandbox's read-only `string` reads, so `s:find(...)` is bounded too. One
-- call that backtracks would otherwise hold the whole worker (a C call is not
-- counted by the instruction budget, nor stopped by a run's timeout).
for name, fn in pairs(drivers.pattern) do string[name] = fn end

-- Likewise string.rep, table.move, table.insert and table.remove
-- (src/lua_bounded.c): the standard library's could loop in C for as long as
-- their arguments said, on no memory (("").rep("", 1e15)).
for lib, fns in pairs(drivers.bounded) do
  for name, fn in pairs(fns) do _G[lib][name] = fn end
end

-- sluice's encoder and decoder (src/json.c): cjson 2.1.0 keeps 14 significant
-- digits and reads numbers as doubles, so 123456789012345 became
-- 123456789012340 and 9007199254740993 9007199254740992; these keep every
-- digit and otherwise behave as cjson did (encode_sparse_array(true))
local json = {
  encode = core.json_encode,
  decode = core.json_decode, -- integers exactly; 1.0 comes back as 1
}
local null = cjson_lib.null
local VALIDATE_OPTS = { null = null } -- what params.validate() is given here

local M = {}

---------------------------------------------------------------- helpers

-- Tables rawset must not write either (a proxy's own fields would shadow the
-- library's, for every handler in the process), with their names.
local protected = setmetatable({}, { __mode = "k" })

local function readonly(t, name)
  local proxy = {}
  protected[proxy] = name
  return setmetatable(proxy, {
    __index = t,
    __newindex = function(_, k)
      error(("cannot modify %s.%s: library tables are read-only"):format(name, tostring(k)), 2)
    end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function edit_distance(a, b)
  local la, lb = #a, #b
  if la == 0 then return lb end
  if lb == 0 then return la end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(cur[j - 1] + 1, prev[j] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

local function nearest(name, candidates)
  local best, bestd
  for _, c in ipairs(candidates) do
    local d = edit_distance(name:lower(), c:lower())
    if d <= math.max(2, #name // 3) and (not bestd or d < bestd) then best, bestd = c, d end
  end
  return best
end

-- "30 min", "7 days", "24h", 90 → seconds
local UNITS = {
  s = 1, sec = 1, secs = 1, second = 1, seconds = 1,
  m = 60, min = 60, mins = 60, minute = 60, minutes = 60,
  h = 3600, hr = 3600, hrs = 3600, hour = 3600, hours = 3600,
  d = 86400, day = 86400, days = 86400,
  w = 604800, week = 604800, weeks = 604800,
}
-- At most ten years: longer ones mean nothing here, and Postgres' intervals
-- overflow past 292,000 years (a max_age of 1e13 s broke every health view).
local DURATION_MAX = 3650 * 86400

local function duration(v)
  if type(v) == "number" then
    if v > DURATION_MAX then return nil, "must be at most 3650 days (10 years)" end
    if v > 0 then return v end
    return nil, "must be a positive number of seconds"
  end
  if type(v) ~= "string" then return nil, "must be a number of seconds or a string like \"30 min\"" end
  local n, unit = v:match("^%s*([%d%.]+)%s*(%a*)%s*$")
  n = tonumber(n)
  if not n then return nil, ("cannot read %q as a duration (e.g. \"30 min\", \"7 days\")"):format(v) end
  local mult = 1 -- seconds, as a string without a unit ("90") is too
  if unit ~= "" then
    mult = UNITS[unit:lower()]
    if not mult then return nil, ("unknown unit %q in %q (use s, min, h, days, weeks)"):format(unit, v) end
  end
  if n <= 0 then return nil, ("must be a positive duration, not %q"):format(v) end
  if n * mult > DURATION_MAX then return nil, ("%q is more than 3650 days (10 years)"):format(v) end
  return n * mult
end
M.duration = duration

---------------------------------------------------------------- the sandbox

local builtin = {}  -- read-only modules every environment shares: "cjson"
local base = {}     -- the allow-listed globals every environment starts from
local new_sluice    -- new_sluice(family) → that family's `sluice` (the public API below)
local new_env

-- A family is an environment (a handler file's, a script's, the REPL's) and the
-- library modules it requires, directly or through other modules: they share one
-- module cache, one `require` and one `sluice`, whose http, retry, spawn, wait
-- and map are instances of their own. Nothing of it is another family's: a
-- module's tables and the metatables of the objects it makes are writable (a
-- library is ordinary Lua), and were one per process, so that a handler that
-- changed require("sluice.params").validate, or the Response metatable of
-- sluice.http, changed them for every handler. Handler files loaded again (a
-- reload) are new families: their libraries are read again from disk.
local function new_family()
  local family = { loaded = {} }
  function family.require(name)
    if type(name) ~= "string" then error("require: module name must be a string", 2) end
    if name == "sluice" then return family.sluice end
    local b = builtin[name]
    if b ~= nil then return b end
    local v = family.loaded[name]
    if v ~= nil then return v end
    local ok, src, chunkname = pcall(read_module, name)
    if not ok then error((tostring(src):gsub("^[^\n]-%.lua:%d+: ", "")), 2) end
    if not src then error(chunkname, 2) end
    local fn, err = load(src, chunkname, "t", new_env(nil, false, family))
    if not fn then error(err, 2) end
    local r = fn(name)
    if r == nil then r = true end
    family.loaded[name] = r
    return r
  end
  family.sluice = new_sluice(family)
  return family
end

-- new_env(extra, permissive[, family]) → a fresh environment, in a family of its
-- own unless one is given.
function new_env(extra, permissive, family)
  family = family or new_family()
  local env = {}
  for k, v in pairs(base) do env[k] = v end
  env.require = family.require
  env.sluice = family.sluice
  for k, v in pairs(extra or {}) do env[k] = v end
  env._G = env
  local mt = {
    __index = function(_, k)
      error(("unknown global '%s'"):format(tostring(k)), 2)
    end,
    __metatable = false,
  }
  if not permissive then
    mt.__newindex = function(_, k)
      error(("assignment to undeclared global '%s' (declare it local)"):format(tostring(k)), 2)
    end
    protected[env] = "the globals"
  end
  return setmetatable(env, mt)
end


do
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
                       "tonumber", "tostring", "type", "xpcall", "rawequal", "rawlen", "rawget",
                       "rawset", "setmetatable", "getmetatable", "_VERSION" }) do
    base[k] = _G[k]
  end
  -- pcall and xpcall say a stack overflow as what it is ("stack overflow: calls
  -- nested too deeply (N levels: …)"), not as Lua's bare "C stack overflow"
  base.pcall, base.xpcall = core.pcall, core.xpcall
  base.rawset = function(t, k, v)
    local name = protected[t]
    if name then error(("rawset: %s cannot be changed (read-only)"):format(name), 2) end
    return rawset(t, k, v)
  end
  -- A finalizer runs inside the garbage collector, where Lua calls no hooks:
  -- the instruction budget could not stop one that looped, and the worker
  -- would hang. Objects are marked for finalization only here, when the
  -- metatable already has __gc, so refusing it here refuses finalizers.
  base.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error("setmetatable: __gc is not available to handlers (a finalizer runs where the " ..
            "instruction budget cannot stop it); release resources explicitly, or with a " ..
            "to-be-closed variable (__close)", 2)
    end
    -- its errors (a bad argument, a protected metatable) at the caller's line,
    -- not this file's
    local ok, r = pcall(setmetatable, t, mt)
    if not ok then error(r, 2) end
    return r
  end
  -- lib with some of its functions replaced (a copy: the host keeps the originals)
  local function with(lib, fns)
    local t = {}
    for k, v in pairs(lib) do t[k] = v end
    for k, v in pairs(fns) do t[k] = v end
    return t
  end
  -- Calls whose work grows with their input and allocate nothing are charged to
  -- the instruction budget before they run: the count hook does not see one
  -- call, and a loop sorting a table of ten million numbers, or measuring a
  -- 400 MB string, held the worker for seconds a call on a few instructions.
  local charge, sort, ulen, uoffset = core.charge, table.sort, utf8.len, utf8.offset
  base.string = readonly(string, "string")
  base.table = readonly(with(table, {
    sort = function(t, comp)
      local n = type(t) == "table" and #t or 0
      if n > 1 then charge(n * math.log(n, 2)) end
      return sort(t, comp)
    end,
  }), "table")
  -- The generator is the process's: seeded by one handler, every handler's
  -- numbers (sluice.retry's jitter among them) would follow that seed.
  base.math = readonly(with(math, {
    randomseed = function()
      error("math.randomseed: the random generator is shared by every handler in the process "
        .. "and seeded at start-up; for a sequence you can repeat, use a generator of your own", 2)
    end,
  }), "math")
  base.utf8 = readonly(with(utf8, {
    len = function(s, ...)
      if type(s) == "string" then charge(#s // 4) end
      return ulen(s, ...)
    end,
    offset = function(s, ...)
      if type(s) == "string" then charge(#s // 4) end
      return uoffset(s, ...)
    end,
  }), "utf8")
  -- A run's coroutine and the tasks of sluice.spawn are resumed by the
  -- scheduler alone, when what they wait for is done. Reached by a handler
  -- (coroutine.running() kept in an upvalue, passed to a spawned task), a
  -- parked one could be resumed in the middle of its wait, or closed, by
  -- another task or another run: that run then went on inside the other, and
  -- failed later as "cannot resume dead coroutine" with its result lost.
  local co = {}
  for k, v in pairs(coroutine) do co[k] = v end
  for _, name in ipairs({ "resume", "close" }) do
    local fn = coroutine[name]
    co[name] = function(thread, ...)
      if core.is_task(thread) then
        error(("coroutine.%s: that coroutine is a sluice task (a run, or a task of "
          .. "sluice.spawn), which only sluice resumes or ends; use sluice.spawn and "
          .. "sluice.wait, or a coroutine of your own"):format(name), 2)
      end
      return fn(thread, ...)
    end
  end
  base.coroutine = readonly(co, "coroutine")
  base.os = readonly({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }, "os")
  base.print = core.print
  -- strings' shared metatable must not be reachable for changes
  getmetatable("").__metatable = false
end

---------------------------------------------------------------- the public API

local function permanent_text(e) return e.message end

local sluice = {}
sluice.null = null
sluice.json = readonly({
  encode = json.encode, decode = json.decode, null = null,
}, "sluice.json")
sluice.now = core.now
sluice.sha256 = core.sha256
sluice.sleep = core.sleep
sluice.log = core.log

-- sluice.env(name) → the value of an environment variable that configures the
-- external services, or nil when it is unset or empty. Only names on this
-- allow-list can be read; any other name raises (handlers do not see the
-- process environment at large).
local ENV_ALLOWED = { "^APIFY_[%w_]+$", "^LLM_[%w_]+$", "^META_[%w_]+$", "^SLUICE_ASSET_DIR$" }
function sluice.env(name)
  if type(name) ~= "string" then error("sluice.env: expected a variable name", 2) end
  local allowed = false
  for _, p in ipairs(ENV_ALLOWED) do allowed = allowed or name:match(p) ~= nil end
  if not allowed then
    error(("sluice.env: '%s' is not readable by handlers (allowed: APIFY_*, LLM_*, META_*, SLUICE_ASSET_DIR)")
      :format(name), 2)
  end
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

-- error_text(v) → the text an error value stands for, read as a run's error
-- is (sl_error_text, src/run.c): a table's `message`, a __tostring, else as
-- M.describe_error says it (a table as JSON, so not "table: 0x…").
local function error_text(v)
  return (core.error_text(v))
end

-- error(sluice.permanent("…")): fail the run without retrying it.
function sluice.permanent(message)
  -- a metatable of its own: getmetatable reaches it, and one shared by every
  -- permanent error was every handler's to change
  return setmetatable({ message = error_text(message), permanent = true },
    { __tostring = permanent_text })
end
-- for the scheduler: the error of a run whose handler yielded it (run.c)
M.permanent = sluice.permanent

local db = { query = dbd.query, null = null }

-- Runs fn(...) inside BEGIN/COMMIT on one connection. An error raised by fn rolls
-- back and propagates; fn returning nil, err[, sqlstate] rolls back and returns
-- them. A COMMIT the server refuses returns nil, err, sqlstate as query does;
-- so does one it answers with ROLLBACK because a query inside failed (fn saw
-- nil, err from it and went on): err names that first failure (lua_db.c).
-- Misuse (a transaction inside another, a coroutine that is not a task) raises
-- at the caller's line: begin() returns it as false, message.
function db.transaction(fn, ...)
  local mt = type(fn) ~= "function" and getmetatable(fn)
  if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error(("sluice.db.transaction: expected a function, got a %s"):format(type(fn)), 2)
  end
  local ok, err = dbd.begin()
  if ok == false then error(err, 2) end
  if not ok then return nil, err end
  local res = table.pack(pcall(fn, ...))
  if not res[1] then
    dbd.rollback()
    error(res[2], 0)
  end
  if res[2] == nil and res[3] ~= nil then
    dbd.rollback()
    return nil, res[3], res[4]
  end
  local cok, cerr, cstate = dbd.commit()
  if not cok then return nil, cerr, cstate end
  return table.unpack(res, 2, res.n)
end
sluice.db = readonly(db, "sluice.db")

-- sluice.assets.put(bytes, ext) → sha256, path, size, created | nil, err, and
-- sluice.assets.begin() → a pending asset a request streams its body into
-- (save_to), then part:commit(ext) → the same four: the content-addressed asset
-- store (src/lua_files.c); the only files a handler can write, at paths it
-- cannot choose. lua/sluice/assets.lua builds on them.
local assets = { put = drivers.files.put_asset, begin = drivers.files.begin_asset }
sluice.assets = readonly(assets, "sluice.assets")

-- sluice.http, sluice.retry, sluice.spawn / wait / map: Lua libraries over C
-- drivers (lua/sluice/http.lua, retry.lua, spawn.lua), loaded on first use, in
-- each family (see new_family): lib(name, driver) → the family's instance.
local lazy = {
  http = function(lib) return readonly(lib("sluice.http", drivers.http), "sluice.http") end,
  retry = function(lib) return lib("sluice.retry").retry end,
  spawn = function(lib) return lib("sluice.spawn", drivers.spawn).spawn end,
  wait = function(lib) return lib("sluice.spawn", drivers.spawn).wait end,
  map = function(lib) return lib("sluice.spawn", drivers.spawn).map end,
}

-- The `sluice` of one family: the shared fields above (C functions and
-- read-only tables) and the family's own instances of the lazy ones.
function new_sluice(family)
  local api, libs = {}, {}
  for k, v in pairs(sluice) do api[k] = v end
  local function lib(name, driver)
    local m = libs[name]
    if m == nil then
      m = family.require(name)
      if driver then m = m(driver) end
      libs[name] = m
    end
    return m
  end
  setmetatable(api, {
    __index = function(t, k)
      local load = lazy[k]
      if not load then return nil end
      local v = load(lib)
      rawset(t, k, v)
      return v
    end,
  })
  return readonly(api, "sluice")
end

builtin.cjson = sluice.json

-- Lua names a C function in an error ("bad argument #1 to '…'") and in a
-- traceback by the field of package.loaded that holds it, when one does. The
-- drivers' names ('core.sleep', 'files.put_asset') mean nothing to a handler's
-- author, so they are taken out, and sluice's own table put in: 'sluice.sleep'.
for name in pairs(drivers) do package.loaded[name] = nil end
package.loaded.sluice = sluice
package.loaded["sluice.json"] = json
package.loaded["sluice.db"] = db
package.loaded["sluice.assets"] = assets

---------------------------------------------------------------- parameters

-- The host's own instance, in a family no handler is part of: the registry's
-- schemas are compiled and checked with it.
local params_lib
local function params()
  if not params_lib then params_lib = new_family().require("sluice.params") end
  return params_lib
end

---------------------------------------------------------------- the registry

local handlers = {}  -- name → entry
-- the same table, which the host reads directly at each run's start
-- (sl_host_push_handler: a call into Lua per run cost more than the run)
M.handlers = handlers

local KNOWN = {
  label = true, emoji = true, description = true, params = true, datasets = true,
  brand = true, timeout = true, max_retries = true, retry_base = true, retry_max = true,
  run = true,
}

local function check_datasets(def, problems)
  local out = {}
  if def.datasets == nil then return out end
  if type(def.datasets) ~= "table" then
    problems[#problems + 1] = "datasets: must be a table of key = { label = …, max_age = … }"
    return out
  end
  for _, key in ipairs(sorted_keys(def.datasets)) do
    local d = def.datasets[key]
    if type(key) ~= "string" or not key:match("^[a-z][a-z0-9_]*$") then
      problems[#problems + 1] = ("datasets: key %q must be lower-case letters, digits and _"):format(tostring(key))
    elseif type(d) ~= "table" then
      problems[#problems + 1] = ("datasets.%s: must be a table { label = …, max_age = … }"):format(key)
    else
      local entry = { label = d.label or key }
      if type(entry.label) ~= "string" then
        problems[#problems + 1] = ("datasets.%s.label: must be a string"):format(key)
      end
      if d.max_age ~= nil then
        local s, err = duration(d.max_age)
        if not s then problems[#problems + 1] = ("datasets.%s.max_age: %s"):format(key, err) end
        entry.max_age_seconds = s
      end
      for k in pairs(d) do
        if k ~= "label" and k ~= "max_age" then
          problems[#problems + 1] = ("datasets.%s: unknown field '%s'"):format(key, tostring(k))
        end
      end
      out[key] = entry
    end
  end
  return out
end

-- The source with comments and string literals blanked out (newlines kept, so
-- line numbers hold), except string literals that directly follow `.dataset`.
local function code_of(src)
  local out, i, n = {}, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if c == "-" and src:sub(i + 1, i + 1) == "-" then
      local eq = src:match("^%[(=*)%[", i + 2)
      local stop
      if eq then
        local _, e = src:find("]" .. eq .. "]", i + 4 + #eq, true)
        stop = e or n
      else
        stop = (src:find("\n", i + 2, true) or n + 1) - 1
      end
      out[#out + 1] = src:sub(i, stop):gsub("[^\n]", " ")
      i = stop + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local _, e = src:find("]" .. eq .. "]", i + 2 + #eq, true)
      e = e or n
      out[#out + 1] = src:sub(i, e)
      i = e + 1
    elseif c == "'" or c == '"' then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      -- keep a literal only where it is a dataset key; blank the others so that
      -- text inside strings is not read as code
      local lit = src:sub(i, j)
      if not (out[#out] or ""):match("[%w_]%s*%.%s*dataset%s*%(?%s*$") then
        lit = c .. lit:sub(2, -2):gsub("[^\n]", " ") .. lit:sub(-1)
      end
      out[#out + 1] = lit
      i = j + 1
    else
      local j = src:find("[-%['\"]", i + 1) or n + 1
      out[#out + 1] = src:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

-- Problems with job.dataset("key") / job.dataset 'key' calls whose literal key
-- is not declared in `datasets`. A static scan of the source: keys computed at
-- run time are checked when the call runs.
local function scan_dataset_calls(source, declared, problems)
  local code = code_of(source)
  local names = {}
  for _, k in ipairs(sorted_keys(declared)) do
    if type(k) == "string" then names[#names + 1] = k end
  end
  local seen = {}
  for pos, key in code:gmatch("()[%w_]+%s*%.%s*dataset%s*%(?%s*[\"']([^\"'\n]*)[\"']") do
    if not declared[key] and not seen[key] then
      seen[key] = true
      local _, line = code:sub(1, pos):gsub("\n", "")
      local s = nearest(key, names)
      problems[#problems + 1] = ("datasets: job.dataset(%q) on line %d uses a dataset the handler does not declare%s (found by a static scan of the source)")
        :format(key, line + 1, s and (" — did you mean '" .. s .. "'?")
                or " — add it to datasets = { " .. key .. " = { label = …, max_age = … } }")
    end
  end
end

-- Why Postgres cannot store s as text, or nil.
local function text_problem(s)
  if utf8.len(s) == nil then return "is not valid UTF-8" end
  if s:find("\0", 1, true) then return "contains a NUL byte" end
  return nil
end

-- The first string in v (a value, or a table's keys and values, raw, as the
-- JSON encoder reads them) that Postgres cannot store as text: why, and its path
-- ("keywords[2]", "a.b"; "" for v itself), or nil.
local function unstorable(v, path, depth)
  if type(v) == "string" then
    local why = text_problem(v)
    if why then return why, path end
    return nil
  end
  if type(v) ~= "table" or depth > 100 then return nil end
  for k, x in next, v do
    local p = math.type(k) == "integer" and ("%s[%d]"):format(path, k)
      or (path ~= "" and path .. "." or "") .. tostring(k)
    local why = type(k) == "string" and text_problem(k)
    if why then return "the name " .. why, p end
    local why2, where = unstorable(x, p, depth + 1)
    if why2 then return why2, where end
  end
  return nil
end

-- Loads one handler file: returns entry, problems (a list; empty when fine).
function M.load_handler(name, path, source, version)
  local env = new_env()
  local fn, err = load(source, "@" .. path, "t", env)
  if not fn then return nil, { (err:gsub("^" .. path:gsub("%p", "%%%0") .. ":", "line ")) } end
  local ok, def = pcall(fn)
  if not ok then return nil, { "loading failed: " .. tostring(def) } end
  if type(def) ~= "table" then
    return nil, { ("the file must return the handler table, not a %s"):format(type(def)) }
  end
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  for k in pairs(def) do
    if not KNOWN[k] then
      local s = type(k) == "string" and nearest(k, sorted_keys(KNOWN))
      bad("unknown field '%s'%s", tostring(k), s and (" — did you mean '" .. s .. "'?") or "")
    end
  end
  if def.run == nil then
    bad("run: missing — the handler must define run = function(job) … end")
  elseif type(def.run) ~= "function" then
    bad("run: must be a function(job) … end, not a %s", type(def.run))
  end
  if def.label ~= nil and type(def.label) ~= "string" then bad("label: must be a string") end
  if def.emoji ~= nil and type(def.emoji) ~= "string" then bad("emoji: must be a string") end
  if def.description ~= nil and type(def.description) ~= "string" then bad("description: must be a string") end
  local brand = def.brand or "optional"
  if brand ~= "required" and brand ~= "optional" then bad("brand: must be \"required\" or \"optional\"") end
  local timeout, retry_base, retry_max = 1800, 10, 3600
  for _, f in ipairs({ { "timeout", 1800 }, { "retry_base", 10 }, { "retry_max", 3600 } }) do
    if def[f[1]] ~= nil then
      local s, e = duration(def[f[1]])
      if not s then bad("%s: %s", f[1], e) end
      if f[1] == "timeout" then timeout = s or timeout
      elseif f[1] == "retry_base" then retry_base = s or retry_base
      else retry_max = s or retry_max end
    end
  end
  -- the delay is capped at retry_max, so a larger retry_base was silently cut
  -- to it: the author meant one of the two values, and only they know which
  if retry_base > retry_max then
    local function shown(f, s)
      local n = s == math.floor(s) and ("%d"):format(math.floor(s)) or ("%g"):format(s)
      if def[f] == nil then return ("(%s s, the default)"):format(n) end
      if type(def[f]) == "string" then return ("%q (%s s)"):format(def[f], n) end
      return ("%s s"):format(n)
    end
    bad("retry_base: %s is more than retry_max %s — the delay between retries is at most retry_max: "
        .. "raise retry_max or lower retry_base", shown("retry_base", retry_base), shown("retry_max", retry_max))
  end
  local max_retries = def.max_retries
  if max_retries == nil then max_retries = 3
  elseif math.type(max_retries) ~= "integer" or max_retries < 0 or max_retries > 1000 then
    bad("max_retries: must be a whole number from 0 to 1000"); max_retries = 3
  end
  local schema, plib
  if def.params ~= nil and type(def.params) ~= "table" then
    bad("params: must be a table of parameter specs")
  else
    plib = params()
    local s, errs = plib.compile(def.params or {})
    if not s then
      for _, e in ipairs(errs) do bad("params: %s", e) end
    end
    schema = s
  end
  local datasets = check_datasets(def, problems)
  if def.datasets == nil or type(def.datasets) == "table" then
    scan_dataset_calls(source, def.datasets or {}, problems)
  end
  -- what goes into the registry must be text Postgres stores: one bad byte
  -- there made every command's registry sync fail, not just this handler
  for _, f in ipairs({ "label", "emoji", "description" }) do
    local why = type(def[f]) == "string" and text_problem(def[f])
    if why then bad("%s: %s", f, why) end
  end
  if #problems == 0 then
    -- (the encoder writes a byte that is not UTF-8 as \ufffd: the strings are checked)
    local described = { plib.describe(schema), plib.defaults(schema), datasets }
    local ok, j = pcall(json.encode, described)
    local why = not ok and tostring(j) or unstorable(described, "", 0)
    if why then bad("params or datasets: a label, description, default or choice %s", why) end
  end
  if #problems > 0 then return nil, problems end
  local empty = plib.validate(schema, {}, VALIDATE_OPTS)
  return {
    empty_ok = empty ~= nil and next(empty) == nil, -- {} validates to {} (validate_params)
    name = name, file = path, version = version, def = def, env = env,
    label = def.label or name, emoji = def.emoji or "", description = def.description,
    brand = brand, timeout_seconds = timeout, max_retries = max_retries,
    retry_base_seconds = retry_base, retry_max_seconds = retry_max,
    schema = schema, datasets = datasets,
    params_lib = plib,  -- the library instance that compiled schema (kept across reloads)
  }, problems
end

-- Starts a (re)load: library modules are read again from disk, so an edited
-- lua/ library takes effect together with the handlers that use it.
function M.begin_load()
  params_lib = nil
end

-- Installs a freshly loaded set of handlers; returns cross-file problems. A job
-- type whose file failed this time keeps its previous version (failed[name]).
-- Runs in flight keep the entry they started with whatever happens here.
local last_failed = {}  -- job types whose files failed at the last load

function M.install(entries, failed)
  last_failed = failed or {}
  for name in pairs(failed or {}) do
    if handlers[name] and not entries[name] then entries[name] = handlers[name] end
  end
  local problems, seen = {}, {}
  for _, name in ipairs(sorted_keys(entries)) do
    for key, d in pairs(entries[name].datasets) do
      local prev = seen[key]
      if prev and (prev.d.label ~= d.label or prev.d.max_age_seconds ~= d.max_age_seconds) then
        problems[#problems + 1] = ("%s: dataset '%s' is declared differently by %s (label %q, max_age %s) and %s (label %q, max_age %s)")
          :format(entries[name].file, key, prev.name, prev.d.label, tostring(prev.d.max_age_seconds),
                  name, d.label, tostring(d.max_age_seconds))
      end
      seen[key] = seen[key] or { name = name, d = d }
    end
  end
  handlers = entries
  M.handlers = entries
  return problems
end

-- The job types loaded from files in dir (a handler directory that cannot be
-- read now keeps them, as a file that fails to load keeps its type).
function M.types_in(dir)
  local out = {}
  for name, e in pairs(handlers) do
    if e.file:sub(1, #dir + 1) == dir .. "/" then out[#out + 1] = name end
  end
  return out
end

-- The daemon loads each handler's sluice.http, retry and spawn at start-up,
-- while its first claim is in flight, instead of inside its first runs.
function M.preload()
  for _, entry in pairs(handlers) do
    local api = rawget(entry.env, "sluice")
    for name in pairs(lazy) do
      local _ = api[name]
    end
  end
end

function M.get_handler(name)
  return handlers[name]
end

function M.type_names(sep)
  return table.concat(sorted_keys(handlers), sep)
end

function M.registry_json()
  local out = {}
  for _, name in ipairs(sorted_keys(handlers)) do
    local e = handlers[name]
    -- every key present: a type without a description has it as null
    out[#out + 1] = {
      name = name, label = e.label, emoji = e.emoji,
      description = e.description == nil and null or e.description,
      brand_rule = e.brand, param_schema = e.params_lib.describe(e.schema),
      default_params = e.params_lib.defaults(e.schema),
      timeout_seconds = e.timeout_seconds, max_retries = e.max_retries,
      retry_base_seconds = e.retry_base_seconds, retry_max_seconds = e.retry_max_seconds,
      file = e.file, version = e.version, datasets = e.datasets,
    }
  end
  -- files that fail to load right now: the registry keeps what it had for them
  for _, name in ipairs(sorted_keys(last_failed)) do
    if not handlers[name] then out[#out + 1] = { name = name, failed = true } end
  end
  if #out == 0 then return "[]" end
  return json.encode(out)
end

local function unknown_type(name)
  local names = sorted_keys(handlers)
  local s = nearest(name, names)
  return ("unknown job type '%s'%s (known: %s)"):format(name,
    s and (" — did you mean '" .. s .. "'?") or "",
    #names > 0 and table.concat(names, ", ") or "none: no handlers are loaded")
end

local function validate_params(entry, raw)
  -- no parameters, and a schema that asks for none and fills none in: the
  -- answer was worked out at load (entry.empty_ok), and most jobs have none
  if entry.empty_ok and next(raw) == nil then return {} end
  local lib = entry.params_lib
  local value, errs = lib.validate(entry.schema, raw, VALIDATE_OPTS)
  if not value then return nil, lib.format_errors(errs) end
  local why, where = unstorable(value, "", 0)
  if why then return nil, ("%s: %s (Postgres cannot store it)"):format(where ~= "" and where or "value", why) end
  return value
end

-- A decoded JSON object: a table, from text that starts with "{" ([] decodes to
-- an empty table too).
local function is_object(raw, text)
  return type(raw) == "table" and text:match("^%s*{") ~= nil
end

-- validate(type, params_json [, here [, no_brand]]) → normalized_json [, note] | nil, message.
-- here: the job is to run in this process (sluice run, the REPL's run()), which
-- a type whose file failed to load cannot do: the run would be created and then
-- fail to start. no_brand: no brand is given; a type that needs one is refused
-- for it in the same message as for its parameters (the database refuses it
-- anyway when the parameters are right). It is true, or how to give a brand
-- where the caller takes it (default "--brand NAME").
function M.validate(name, params_json, here, no_brand)
  local entry = handlers[name]
  if not entry and last_failed[name] and here then
    return nil, ("%s: its handler file failed to load here (the problem is above; see `sluice "
      .. "check`), so it cannot run here"):format(name)
  end
  if not entry and last_failed[name] then
    -- its file is broken here: the database checks it against the last good registry
    local ok, raw = pcall(json.decode, params_json)
    if not ok or not is_object(raw, params_json) then return nil, "parameters must be a JSON object" end
    return params_json, ("%s: its handler file failed to load here (see `sluice check`); the "
      .. "database checks the job against the last version it registered"):format(name)
  end
  if not entry then return nil, unknown_type(name) end
  local ok, raw = pcall(json.decode, params_json)
  if not ok then return nil, "parameters are not valid JSON: " .. tostring(raw):gsub("^.-: ", "") end
  if not is_object(raw, params_json) then return nil, "parameters must be a JSON object" end
  local value, err = validate_params(entry, raw)
  if not value and no_brand and entry.brand == "required" then
    -- both at once: told only of the parameters, the user learns of the brand
    -- on the next try
    local how = type(no_brand) == "string" and no_brand or "--brand NAME"
    return nil, ("job type '%s' needs a brand (%s), and its parameters: %s"):format(name, how, err)
  end
  if not value then return nil, err end
  return json.encode(value)
end

---------------------------------------------------------------- runs

-- count_of(v) → v as a record count (an integer from 0 up, as Postgres's
-- bigint holds it), or nil when it is not one: 1.5, -1 and 1e30 are not.
local function count_of(v)
  local n = math.type(v) and math.tointeger(v)
  if n and n >= 0 then return n end
  return nil
end

local function describe_value(v)
  if type(v) == "string" then return ("string %q"):format(#v > 60 and v:sub(1, 60) .. "…" or v) end
  if type(v) == "number" then return ("number %s"):format(v) end
  return type(v)
end

-- The largest checkpoint value, as JSON: every claim of the job reads all its
-- checkpoints back, and writing one holds the worker while it is encoded (a
-- 50 MB one held every other run 0.7 s). A job's result is capped likewise
-- (SL_RESULT_MAX), and each dataset report (SL_DATASET_REPORT_MAX, the same 1 MiB).
local CHECKPOINT_MAX = 1 << 20

-- Gives job its methods, log, dataset and checkpoint (see job_meta below).
local function add_methods(job, entry, spec)
  local ok, checkpoints = pcall(json.decode, spec.checkpoint_json or "{}")
  if not ok or type(checkpoints) ~= "table" then checkpoints = {} end
  local unkept = false -- a save was refused (the parameters changed): said once
  local methods = {}
  -- A job object belongs to its run: kept past it (in an upvalue, say), it would
  -- write into a finished job or into another run's log. `level` is the caller's
  -- level as seen from the function calling these.
  local function live(what, level)
    if core.run_id() ~= spec.run_id then
      if core.run_active(spec.run_id) then -- kept in an upvalue by a run still going
        error(("job.%s: this job object is another run's, which is still going (a job object "
          .. "is valid only during its own run: use the job your run(job) was given)")
          :format(what), level + 1)
      end
      error(("job.%s: this job's run has ended (a job object is valid only during its run)")
        :format(what), level + 1)
    end
  end
  local function encode(what, v, level)
    local ok, s = pcall(json.encode, v)
    if not ok then
      error(("job.%s: the value cannot be encoded as JSON: %s"):format(what, tostring(s)), level + 1)
    end
    return s
  end
  function methods.log(fmt, ...)
    live("log", 2)
    if select("#", ...) == 0 then return core.log(tostring(fmt)) end
    local ok, line = pcall(string.format, fmt, ...)
    if not ok then error("job.log: " .. tostring(line), 2) end
    core.log(line)
  end
  function methods.dataset(key)
    live("dataset", 2)
    if not entry.datasets[key] then
      error(("job.dataset: '%s' is not one of %s's datasets (declare it in the handler's datasets)")
        :format(tostring(key), entry.name), 2)
    end
    -- called from success/fail/skip: the handler's line is 3 levels up
    local function report(r)
      live("dataset", 3)
      local ok, err = core.dataset(key, encode("dataset", r, 3))
      if not ok then error(err, 3) end
    end
    return {
      success = function(_, records, metadata)
        if records ~= nil and not count_of(records) then
          error(("job.dataset: records must be a whole number of at least 0, or nil, got %s")
            :format(describe_value(records)), 2)
        end
        if metadata ~= nil and type(metadata) ~= "table" then
          error(("job.dataset: metadata must be a table, or nil, got %s"):format(describe_value(metadata)), 2)
        end
        report({ status = "completed", records = records and count_of(records), metadata = metadata or setmetatable({}, nil) })
      end,
      fail = function(_, err)
        report({ status = "failed", error = error_text(err) })
      end,
      -- this run did not work on the dataset: its freshness stays as it was
      skip = function(_, reason)
        report({ status = "skipped", reason = reason and tostring(reason) })
      end,
    }
  end
  -- job.checkpoint(key) reads; job.checkpoint(key, value) stores it for retries.
  function methods.checkpoint(key, value)
    if type(key) ~= "string" then
      error(("job.checkpoint: the key must be a string, got %s"):format(describe_value(key)), 2)
    end
    if value == nil then return checkpoints[key] end
    live("checkpoint", 2)
    local bad = text_problem(key)
    if bad then error(("job.checkpoint: the key %s (Postgres cannot store it)"):format(bad), 2) end
    local text = encode("checkpoint", value, 2)
    if #text > CHECKPOINT_MAX then
      error(("job.checkpoint: the value is %d bytes as JSON, more than the %d a checkpoint value may "
        .. "be (keep bulk data in tables or the asset store, and checkpoint where it is)")
        :format(#text, CHECKPOINT_MAX), 2)
    end
    -- read back by this run only once saved: a save that raises changes nothing
    if not spec.id then checkpoints[key] = value return end
    -- kept only while the job's parameters are those this run started with:
    -- after `jobs edit --params` the next run must not resume this one's work
    local rows, err = dbd.query(
      "UPDATE sluice.scheduled_jobs SET checkpoint = checkpoint || jsonb_build_object($2::text, $3::jsonb) "
      .. "WHERE id = $1 AND parameters = $4::jsonb",
      spec.id, key, text, spec.params_json or "{}")
    if not rows then error("job.checkpoint: " .. err, 2) end
    checkpoints[key] = value
    if rows.affected == 0 and not unkept then
      unkept = true
      core.log(("job.checkpoint: %q not kept: the job's parameters were changed since this run started "
        .. "(or the job is gone), so its next run starts afresh"):format(key))
    end
  end
  for name, f in pairs(methods) do
    if rawget(job, name) == nil then rawset(job, name, f) end -- one the handler set stays
  end
end

-- A job object gets its methods on the first use of one: most runs of a busy
-- worker call none, and making them for every run was about a fifth of what a
-- run cost the daemon. unmade: job -> its spec, until then (spec.entry: the
-- handler). The metatable is shared and hidden (__metatable), so one handler
-- cannot change another run's job objects through it.
local unmade = setmetatable({}, { __mode = "k" })
local JOB_METHODS = { log = true, dataset = true, checkpoint = true }
local job_meta = {
  __index = function(job, k)
    local spec = JOB_METHODS[k] and unmade[job]
    if not spec then return nil end
    unmade[job] = nil
    add_methods(job, spec.entry, spec)
    return rawget(job, k)
  end,
  __metatable = false,
}

local function make_job(entry, spec, params_value)
  local job = setmetatable({
    id = spec.id, run_id = spec.run_id, type = spec.type, brand_id = spec.brand_id,
    params = params_value, attempt = spec.attempt, trigger_source = spec.trigger_source,
  }, job_meta)
  spec.entry = entry
  unmade[job] = spec
  return job
end

-- The body of every run's main coroutine.
function M.execute(entry, spec)
  -- most jobs have no parameters: "{}" is not decoded (validate_params()
  -- knows what an empty object gives)
  local ok, raw = true, {}
  if spec.params_json ~= "{}" then ok, raw = pcall(json.decode, spec.params_json) end
  if not ok or type(raw) ~= "table" then
    error(sluice.permanent("parameters are not a JSON object"))
  end
  local value, err = validate_params(entry, raw)
  if not value then error(sluice.permanent("invalid parameters: " .. err)) end
  if not spec.brand_id and entry.brand == "required" and next(entry.datasets) ~= nil then
    -- a direct run without a brand: the datasets are kept per brand, and the
    -- database writes no platform row for them (196)
    core.log(("run without a brand: the freshness of %s is kept per brand and is left as it was")
      :format(table.concat(sorted_keys(entry.datasets), ", ")))
  end
  return entry.def.run(make_job(entry, spec, value))
end

-- encode_result(v, job_type) → json | nil, why (cjson's reason, e.g. "Cannot
-- serialise function: type not supported") | nil, message, true (the whole
-- message: v's records is not a count).
-- A returned `records` is the count the job type's datasets are completed with
-- when the handler made no report of its own; a number that is not a count
-- (-1, 1.5, 1e30) would be stored wrong, or refused by the database with the
-- whole outcome, so it fails the run, as a result that cannot be encoded does.
-- (Not a number: no count.)
function M.encode_result(v, job_type)
  if v == nil then return "null" end
  local entry = job_type and handlers[job_type]
  if entry and next(entry.datasets) ~= nil and type(v) == "table" then
    local n = rawget(v, "records")
    if type(n) == "number" and not count_of(n) then
      return nil, ("the handler's return value: records (the record count of %s's datasets) must be "
        .. "a whole number of at least 0, got %s"):format(job_type, describe_value(n)), true
    end
  end
  local ok, s = pcall(json.encode, v)
  if ok then return s end
  return nil, (tostring(s):gsub("^.-:%d+: ", ""))
end

-- describe_error(v, outside) → text for an error value that is neither a
-- string nor a table with a message: a table as JSON where it can be (else why
-- it cannot: "table: 0x…" says nothing), nil said as such. outside: the value
-- was raised outside a run (a `sluice exec` script, a REPL input), so by no
-- handler.
function M.describe_error(v, outside)
  if v == nil then
    return ("error(nil): the %s raised no message"):format(outside and "code" or "handler")
  end
  if type(v) == "table" then
    local ok, s = pcall(json.encode, v)
    if ok then return "error value " .. s end
    return ("error value: a table that cannot be written as JSON (%s)")
      :format((tostring(s):gsub("^[^\n]-:%d+: ", "")))
  end
  return "error value " .. tostring(v)
end

---------------------------------------------------------------- scripts

-- compile_chunk(source, chunkname, args) → function | nil, message
function M.compile_chunk(source, chunkname, args)
  local env = new_env({ arg = args }, true)
  return load(source, chunkname, "t", env)
end

---------------------------------------------------------------- the REPL

-- The REPL's environment (globals writable, the helpers present) and its helper
-- library lua/sluice/repl.lua, made on first use. repl.lua is trusted like this
-- file: it gets the run primitive, the registry and reload, which handlers never
-- see; the environment holds only its closures.
local repl
local function repl_state()
  if not repl then
    local src, chunkname = read_module("sluice.repl")
    if not src then error(chunkname) end
    local env = new_env(nil, true)
    local lib = assert(load(src, chunkname, "t", _ENV))({
      host = M, sluice = rawget(env, "sluice"), driver = drivers.repl, json = json, null = null, env = env,
    })
    repl = { env = env, lib = lib }
  end
  return repl
end

-- repl_compile(source, chunkname) → function | nil, message, incomplete
-- Like lua.c: "=expr" and a bare expression print their values (tried first as
-- "return <source>;"), else the source is a statement; an error at <eof> means the
-- chunk is unfinished (incomplete: read another line). The function runs the
-- input and prints what it returns. An expression's values are returned through
-- an identity function where it compiles so (not after a trailing comment), not
-- as `return <source>`: that would make a call in it a tail call, and an error
-- the callee raises at its caller's level (`error(msg, 2)`, as sluice.spawn does)
-- would name the REPL's evaluator instead of the input.
function M.repl_compile(source, chunkname)
  local r = repl_state()
  source = source:gsub("^%s*=", "return ", 1)
  local fn = load("return " .. source .. ";", chunkname, "t", r.env)
  if fn then
    local expr = source:sub(1, source:find("%S%s*$") or 0) -- ")" on its last line: errors keep it
    fn = load("return (function(...) return ... end)(" .. expr .. ")", chunkname, "t", r.env) or fn
  else
    local err
    fn, err = load(source, chunkname, "t", r.env)
    if not fn then return nil, err, err:sub(-5) == "<eof>" end
  end
  return r.lib.evaluator(fn)
end

-- repl_complete(before, word) → { candidates… }, append
function M.repl_complete(before, word)
  return repl_state().lib.complete(before, word)
end

return M
