-- tests/lua/test_llm.lua — the parts of sluice.llm that need no server:
-- llm.parse_json (JSON alone, fenced, or with prose around it), llm.batches and
-- llm.cost. The calls to the endpoint are tested in
-- tests/integration/test_seed_research.py against the fixture LLM.
--
-- Prints "ok - name" / "not ok - name: detail" per test, then "N passed, M
-- failed", and raises at the end if anything failed.

local fmt = string.format
local llm = require("sluice.llm")
local json = sluice.json

local T = require("testlib")
local test, eq = T.test, T.eq

-- parse_json(text) must give the same value as decoding `want` alone.
local function parses(text, want)
  local v, err = llm.parse_json(text)
  if v == nil then error(fmt("%q: %s", text, tostring(err)), 2) end
  local got, exp = json.encode(v), json.encode(json.decode(want))
  if got ~= exp then error(fmt("%q: expected %s, got %s", text, exp, got), 2) end
end

local function fails(text)
  local v, err = llm.parse_json(text)
  if v ~= nil then error(fmt("%q: expected no value, got %s", tostring(text), json.encode(v)), 2) end
  return err
end

local RESULTS = '{"results":[{"index":1,"score":0.8,"reasoning":"ok"},{"index":2,"score":0.1}]}'

-- ===================================================================== parse_json

test("parse_json: JSON alone, with white space, and scalars", function()
  parses(RESULTS, RESULTS)
  parses("  \n" .. RESULTS .. "\n\n", RESULTS)
  parses("[1, 2, 3]", "[1,2,3]")
  parses("42", "42")
end)

test("parse_json: fenced blocks", function()
  parses("```json\n" .. RESULTS .. "\n```", RESULTS)
  parses("```\n[1,2]\n```", "[1,2]")
  parses("Here it is:\n```json\n" .. RESULTS .. "\n```\nHope that helps.", RESULTS)
end)

test("parse_json: prose before or after one value", function()
  parses("Here you go: " .. RESULTS, RESULTS)
  parses(RESULTS .. "\nLet me know if you need more.", RESULTS)
  parses("Sure! " .. RESULTS .. " Done.", RESULTS)
end)

test("parse_json: prose after the value holding braces or brackets", function()
  parses(RESULTS .. " Note: {scores} are approximate.", RESULTS)
  parses('Here you go: [{"index":1,"score":0.5}] (scale [0,1])', '[{"index":1,"score":0.5}]')
  parses(RESULTS .. "\n\nScores are in [0, 1]; see {above}.", RESULTS)
end)

test("parse_json: bracketed prose before the value", function()
  parses("Scores for [busy parents]:\n" .. RESULTS, RESULTS)
  parses("{Summary} as asked: " .. RESULTS, RESULTS)
  parses("An unclosed [aside: " .. RESULTS, RESULTS)
  parses("Mismatched [aside} then " .. RESULTS .. " and ]", RESULTS)
end)

test("parse_json: brackets and quotes inside strings do not end the value", function()
  local v = '{"quote":"it said } and ] and \\"{\\" here","list":["[", "\\\\", "}"]}'
  parses("Result: " .. v .. " (that is all}", v)
  parses('Noted [x]: {"a":"\\\\"} [1,2]', '{"a":"\\\\"}')
end)

test("parse_json: the first value that decodes wins", function()
  parses('{"a":1} and then {"b":2}', '{"a":1}')
  parses('[not json] {bad: 1} {"ok":true}', '{"ok":true}')
end)

test("parse_json: no JSON at all", function()
  local err = fails("I cannot help with that.")
  assert(err:find("the reply is not valid JSON", 1, true), err)
  fails("Only {prose in braces} and [brackets].")
  fails('{"cut": [1, 2, ')
  fails("")
  err = fails(nil)
  eq(err, "the reply has no text content")
end)

test("parse_json: start positions are bounded", function()
  -- a long run of openers is given up on, not scanned from every position
  fails(string.rep("[", 200000))
  fails(string.rep("{", 100000) .. string.rep("]", 100000))
  fails(string.rep('["a\\"]",', 50000))
  -- a big value with prose around it is still found whole
  local items = {}
  for i = 1, 20000 do items[i] = fmt('{"index":%d,"quote":"[x] {y} \\"z\\""}', i) end
  local big = '{"results":[' .. table.concat(items, ",") .. ']}'
  parses("Scores for [all]:\n" .. big .. "\nNote: {scores} are approximate.", big)
  -- past the bound, a value behind many bracketed asides is not looked for
  fails(string.rep("[x] ", 100) .. RESULTS)
  parses(string.rep("[x] ", 10) .. RESULTS, RESULTS)
end)

-- ===================================================================== helpers

test("batches", function()
  local b = llm.batches({ "a", "b", "c", "d", "e" }, 2)
  eq(#b, 3)
  eq(table.concat(b[1], ","), "a,b")
  eq(table.concat(b[3], ","), "e")
  eq(#llm.batches({}, 3), 0)
end)

test("cost", function()
  eq(llm.cost({ prompt_tokens = 1e6, completion_tokens = 1e6 }, { price_in = 0.15, price_out = 0.60 }), 0.75)
  eq(llm.cost({}, { price_in = 1, price_out = 1 }), 0)
end)

T.done()
