-- assets.lua — the content-addressed asset store as handlers use it: download a
-- media URL with size and content-type checks and keep its bytes once, under
-- their SHA-256, through sluice.assets.put (src/lua_files.c).
--
--   local assets = require("sluice.assets")
--   local a, err, class = assets.download(url, { kind = "image" })
--   -- a = { key = "ab/ab12….jpg", sha256, size, mime_type, ext, created,
--   --       width, height (images), url }
--   -- class = "not_downloadable" (404/410, too large: retrying cannot help)
--   --       | "expired" (403: a signed CDN URL past its expiry, most likely;
--   --         the same URL will not work again, a fresh one may)
--   --       | "failed" (anything else about this URL: worth another try)
--   --       | "store" (the asset store cannot be written: nothing will work)
--
-- The store is the directory SLUICE_ASSET_DIR (default $SLUICE_HOME/assets); a
-- file lives at <dir>/<key>. The same bytes downloaded from two URLs are one file.
-- A download streams to a pending file in the store (sluice.assets.begin) as it
-- arrives and is hashed on the way: only its first 256 KiB are in memory, to
-- tell its type and an image's size, whatever the file's size.

local M = {}

-- Larger files are not_downloadable; the whole transfer must end within TIMEOUT.
M.MAX_BYTES = { image = 30 * 1024 * 1024, video = 1024 * 1024 * 1024 }
M.TIMEOUT = { image = 120, video = 600 }

local EXT = {
  ["image/jpeg"] = "jpg", ["image/jpg"] = "jpg", ["image/pjpeg"] = "jpg", ["image/png"] = "png",
  ["image/gif"] = "gif", ["image/webp"] = "webp", ["video/mp4"] = "mp4",
  ["video/quicktime"] = "mov", ["video/webm"] = "webm", ["video/x-m4v"] = "m4v",
}

-- The media type the bytes say they are (magic numbers), or nil.
function M.sniff(b)
  if b:sub(1, 3) == "\255\216\255" then return "image/jpeg" end
  if b:sub(1, 8) == "\137PNG\r\n\26\n" then return "image/png" end
  if b:sub(1, 4) == "GIF8" then return "image/gif" end
  if b:sub(1, 4) == "RIFF" and b:sub(9, 12) == "WEBP" then return "image/webp" end
  if b:sub(5, 8) == "ftyp" then
    return b:sub(9, 10) == "qt" and "video/quicktime" or "video/mp4"
  end
  if b:sub(1, 4) == "\26\69\223\163" then return "video/webm" end
  return nil
end

-- Width and height of a JPEG (its first SOFn segment) or PNG (IHDR), or nil.
function M.dimensions(b, mime)
  if mime == "image/png" and #b >= 24 then
    return (">I4"):unpack(b, 17), (">I4"):unpack(b, 21)
  end
  if mime ~= "image/jpeg" then return nil end
  local i, n = 3, #b
  while i + 8 <= n do
    if b:byte(i) ~= 0xFF then return nil end
    local marker = b:byte(i + 1)
    if marker == 0xD8 or marker == 0x01 or (marker >= 0xD0 and marker <= 0xD7) then
      i = i + 2
    elseif marker == 0xFF then
      i = i + 1
    else
      local len = (">I2"):unpack(b, i + 2)
      if marker >= 0xC0 and marker <= 0xCF and marker ~= 0xC4 and marker ~= 0xC8 and marker ~= 0xCC then
        local h, w = (">I2I2"):unpack(b, i + 5)
        return w, h
      end
      if marker == 0xDA then return nil end
      i = i + 2 + len
    end
  end
  return nil
end

-- The media type of a Content-Type header, lower-cased; nil when it names
-- none (absent, empty, or only parameters: "; charset=…").
local function media_type(header)
  if type(header) ~= "string" then return nil end
  local t = header:match("^%s*([^;%s]+)")
  return t and t:lower()
end

local function describe(mime, ext, head, sha, size, created)
  local info = { key = sha:sub(1, 2) .. "/" .. sha .. "." .. ext, sha256 = sha, size = size,
                 mime_type = mime, ext = ext, created = created }
  if mime and mime:match("^image/") then info.width, info.height = M.dimensions(head, mime) end
  return info
end

-- Stores bytes already in hand: info | nil, err
function M.store(bytes, mime)
  local ext = EXT[mime] or "bin"
  local sha, path_or_err, size, created = sluice.assets.put(bytes, ext)
  if not sha then return nil, path_or_err end
  return describe(mime, ext, bytes, sha, size, created)
end

-- download(url, opts) → info | nil, err, class
--   opts.kind: "image" | "video" (required: the content must be of that kind)
--   opts.max_bytes (default 30 MB images, 1 GB videos), opts.timeout (120 s
--   images, 600 s videos)
function M.download(url, opts)
  local kind = opts and opts.kind
  if kind ~= "image" and kind ~= "video" then
    error("assets.download: opts.kind must be \"image\" or \"video\"", 2)
  end
  if type(url) ~= "string" or not url:match("^https?://") then
    return nil, "not an http(s) URL", "not_downloadable"
  end
  -- a request would stop at the NUL and fetch another URL; the next answer
  -- that gave this one may give a good one
  if url:find("\0", 1, true) then return nil, "the URL holds a NUL character", "failed" end
  local max = opts.max_bytes or M.MAX_BYTES[kind]
  -- removed when this function returns, unless committed
  local part <close>, perr = sluice.assets.begin()
  if not part then return nil, perr, "store" end
  local res, err = sluice.http.request({
    method = "GET", url = url, timeout = opts.timeout or M.TIMEOUT[kind], max_bytes = max,
    follow = true, save_to = part,
  })
  if not res then
    if err and err:match("^response larger than") then return nil, err, "not_downloadable" end
    -- the pending file could not be written (a full disk, a quota): the store
    -- failed, not this download, and every other would fail the same way
    if err and err:match("^cannot store the response:") then return nil, err, "store" end
    return nil, err, "failed"
  end
  if res.status == 403 then
    return nil, "HTTP 403 (an expired signed URL, most likely)", "expired"
  end
  if res.status == 404 or res.status == 410 then
    return nil, ("HTTP %d"):format(res.status), "not_downloadable"
  end
  if not res.ok then return nil, ("HTTP %d"):format(res.status), "failed" end
  local head = res.body -- the first 256 KiB
  if res.size == 0 then return nil, "empty body", "failed" end
  -- the bytes decide; the header must not contradict them
  local declared = media_type(res.headers["content-type"])
  local sniffed = M.sniff(head)
  local generic = declared == nil or declared == "application/octet-stream"
    or declared == "binary/octet-stream"
  if not generic and not declared:match("^" .. kind .. "/") then
    return nil, ("unexpected content type %s (wanted %s/*)"):format(declared, kind), "failed"
  end
  local mime = sniffed or (not generic and declared) or nil
  if not mime or not mime:match("^" .. kind .. "/") then
    return nil, ("the bytes are not a known %s format (content type %s)"):format(kind, declared or "none"),
      "failed"
  end
  local ext = EXT[mime] or "bin"
  local sha, path_or_err, size, created = part:commit(ext)
  if not sha then return nil, path_or_err, "store" end
  local info = describe(mime, ext, head, sha, size, created)
  info.url = url
  return info
end

return M
