-- plural.lua — a count and its noun in the number the count takes, for the
-- lines job types log and the errors they raise: "1 post", not "1 posts".
--
--   local plural = require("sluice.plural")
--   plural(1, "post")                   --> "1 post"
--   plural(3, "post")                   --> "3 posts"
--   plural(0, "reply", "replies")       --> "0 replies"
--
-- n is a whole number (formatted with %d, as the lines did before).

return function(n, one, many)
  return ("%d %s"):format(n, n == 1 and one or many or one .. "s")
end
