-- tests/lua/test_plural.lua — sluice.plural, a count with its noun in the
-- number the count takes.

local plural = require("sluice.plural")
local T = require("testlib")
local test, eq = T.test, T.eq

test("one is singular; none and many are plural", function()
  eq(plural(1, "post"), "1 post")
  eq(plural(0, "post"), "0 posts")
  eq(plural(2, "post"), "2 posts")
  eq(plural(1.0, "post"), "1 post")
end)

test("an irregular plural is given", function()
  eq(plural(1, "reply", "replies"), "1 reply")
  eq(plural(3, "reply", "replies"), "3 replies")
  eq(plural(2, "batch", "batches"), "2 batches")
end)

T.done()
