-- clean.lua — making one scraped value storable, so that one bad item does not
-- fail the batch it is written in (and every retry of it): Postgres refuses a
-- NUL in text and jsonb, an integer past its column's range, and a timestamp
-- past year 294276. Used by lua/sluice/amazon.lua, facebook_ads.lua, reddit.lua,
-- meta_assets.lua and handlers/meta_sync.lua; what the database refuses all
-- the same is skipped row by row by lua/sluice/rows.lua.
--
--   local clean = require("sluice.clean")
--   clean.text("a\0b")                  --> "ab", true      (NUL removed)
--   clean.deep(item)                    --> a copy without NUL in any string, count
--   clean.strip(item, "ad 1")           --> the same, and "ad 1: NUL characters removed
--                                           from 2 texts" (nil when there was none)
--   clean.nul_note("review R1", { "title", "text" }) --> "review R1: NUL characters
--                                           removed from text, title"
--   clean.count("3,000,000,000", clean.INT4_MAX) --> nil, "3,000,000,000 is out of range"
--   clean.epoch(1733011200000)          --> 1733011200, "milliseconds"
--   clean.notes(job, notes, "item")     -- logs the first few notes and how many more
--   clean.value(sluice.null), clean.value("")   --> nil, nil (absent); other values pass
--
-- Each function returns nil (with the reason) for a value it cannot read; the
-- caller stores NULL for it and keeps the rest of the item.

local plural = require("sluice.plural")

local M = {}

M.INT4_MAX = 2147483647
M.INT8_MAX = math.maxinteger
-- 2100-01-01: a later "unix seconds" value is not a date an ad ran on
M.EPOCH_MAX = 4102444800
M.NOTES_SHOWN = 5

-- A decoded JSON value with null and "" read as absent (nil): the services
-- send either for a field they have no value for.
function M.value(x)
  if x == sluice.null or x == "" then return nil end
  return x
end

-- A string without its NUL bytes, and whether it had any. Other values pass.
function M.text(s)
  if type(s) ~= "string" or not s:find("\0", 1, true) then return s, false end
  return (s:gsub("%z", "")), true
end

-- A copy of a decoded JSON value with NUL removed from every string (keys
-- included), and how many strings had one. A value without NUL is returned
-- as it is, not copied.
function M.deep(v)
  if type(v) == "string" then
    local s, changed = M.text(v)
    return s, changed and 1 or 0
  end
  if type(v) ~= "table" then return v, 0 end
  local out, n = {}, 0
  for k, x in pairs(v) do
    local ck, nk = M.deep(k)
    local cx, nx = M.deep(x)
    out[ck] = cx
    n = n + nk + nx
  end
  if n == 0 then return v, 0 end
  return setmetatable(out, getmetatable(v)), n
end

-- The note saying NUL was removed from a scraped item's texts, for the run's
-- log (see M.notes), or nil when nothing was removed. `name` names the item
-- ("post t3_abc", "ad 123"); `removed` is how many texts had NUL, or a list of
-- the names of the fields that had (listed sorted, the list left as it is).
function M.nul_note(name, removed)
  if type(removed) == "table" then
    if #removed == 0 then return nil end
    local fields = table.move(removed, 1, #removed, 1, {})
    table.sort(fields)
    return ("%s: NUL characters removed from %s"):format(name, table.concat(fields, ", "))
  end
  if not removed or removed == 0 then return nil end
  return ("%s: NUL characters removed from %s"):format(name, plural(removed, "text"))
end

-- M.deep, and M.nul_note on what it removed: the cleaned value, how many
-- strings had NUL, and the note (nil when none had). `name` is the item's name,
-- or a function of the cleaned value returning it (called only when there is a
-- note), so that a name read from the item holds no NUL either.
function M.strip(v, name)
  local c, n = M.deep(v)
  if n == 0 then return c, 0, nil end
  if type(name) == "function" then name = name(c) end
  return c, n, M.nul_note(name, n)
end

-- A whole number from a JSON number or a text such as "1,234", "1.234",
-- "1 234", "12 people found this helpful" or "One person found this helpful".
-- Digits grouped by threes with one separator are one number; otherwise the
-- first run of digits counts. Returns an integer in 0..max, or nil, why.
function M.count(v, max)
  max = max or M.INT8_MAX
  local n
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil, ("%s is not a number"):format(v) end
    n = v
  elseif type(v) == "string" then
    local s = v:gsub("\194\160", " "):gsub("\226\128\175", " ")   -- no-break spaces
    local tok = s:match("%d[%d,%.' ]*")
    if tok then
      tok = tok:gsub("[,%.' ]+$", "")
      local head, rest = tok:match("^(%d%d?%d?)([,%.' ].*)$")
      local sep = rest and "%" .. rest:sub(1, 1)
      if sep and rest:gsub(sep .. "%d%d%d", "") == "" then
        n = tonumber(head .. rest:gsub(sep, ""))
      else
        n = tonumber(tok:match("^%d+"))
      end
    elseif s:match("^%s*[Oo]ne%f[%A]") then
      n = 1
    else
      return nil, ("%q is not a number"):format(v)
    end
  else
    return nil
  end
  n = math.tointeger(math.floor(n))
  if not n or n < 0 or n > max then return nil, ("%s is out of range (0 to %d)"):format(v, max) end
  return n
end

-- { below, divisor, unit name }: a value under `below` is in that unit
local EPOCH_UNITS = { { 1e11, 1 }, { 1e14, 1e3, "milliseconds" }, { 1e17, 1e6, "microseconds" },
                      { 1e20, 1e9, "nanoseconds" } }

-- Unix seconds from a number (or numeric text) in seconds, milliseconds,
-- microseconds or nanoseconds — told apart by magnitude, which is unambiguous
-- for dates from 1973 to 2100. Returns seconds (an integer), and "milliseconds"
-- (…) when the value was scaled; nil, why when it is no date in 1970–2100.
function M.epoch(v)
  local n = type(v) == "number" and v or (type(v) == "string" and tonumber(v)) or nil
  if not n or n ~= n or n == math.huge or n == -math.huge then
    return nil, v ~= nil and ("%s is not a unix time"):format(v) or nil
  end
  local scale, unit
  for _, u in ipairs(EPOCH_UNITS) do
    if math.abs(n) < u[1] then scale, unit = u[2], u[3]; break end
  end
  if not scale then return nil, ("%s is not a unix time"):format(v) end
  n = math.floor(n / scale)
  if n < 0 or n > M.EPOCH_MAX then
    return nil, ("%s is not a unix time between 1970 and 2100"):format(v)
  end
  return math.tointeger(n), unit
end

-- Logs notes about cleaned or skipped values: the first NOTES_SHOWN, then how
-- many more there were. `one` names a thing the notes are about ("post"),
-- `many` several of them when that is not `one` .. "s".
function M.notes(job, notes, one, many)
  if #notes == 0 then return end
  job.log("%s had values that could not be stored as they were (stored cleaned, or left empty):",
          plural(#notes, one, many))
  for i = 1, math.min(#notes, M.NOTES_SHOWN) do job.log("  %s", notes[i]) end
  if #notes > M.NOTES_SHOWN then job.log("  … and %d more", #notes - M.NOTES_SHOWN) end
end

return M
