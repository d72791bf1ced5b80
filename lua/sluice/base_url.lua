-- base_url.lua — a service's base URL, as the environment (or an option) gives
-- it, checked before any request: a value that is no http(s) URL failed every
-- request as a transport error, which the clients retried as if the service
-- were down. Used by apify.lua, graph.lua and llm.lua.
--
--   local base_url_problem = require("sluice.base_url")
--   local why = base_url_problem("APIFY_BASE_URL", v, "https://api.apify.com")
--   -- nil when v is http(s)://host…, else the message naming the variable

return function(name, v, example)
  if v:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#%s]+") and not v:find("%s") then return nil end
  return ("%s must be an http(s) URL such as %s, not %q"):format(name, example, v)
end
