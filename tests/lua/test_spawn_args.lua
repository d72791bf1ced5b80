-- test_spawn_args.lua — a task of sluice.spawn gets every argument it was
-- started with: a new coroutine has room for 40 values, and the arguments were
-- moved onto it without making more, past the end of its stack.

local t = require("testlib")

for _, n in ipairs({ 39, 40, 41, 200, 100000 }) do
  t.test(("a task started with %d arguments gets them all"):format(n), function()
    local args = {}
    for i = 1, n do args[i] = i * 2 end
    local h = sluice.spawn(function(...)
      local got, sum = table.pack(...), 0
      for i = 1, got.n do sum = sum + got[i] end
      return got.n, sum
    end, table.unpack(args))
    local count, sum = sluice.wait(h)
    t.eq(count, n, "arguments")
    t.eq(sum, n * (n + 1), "their sum")
  end)
end

t.done()
