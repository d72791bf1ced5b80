#!/usr/bin/env python3
"""The benchmark's target server: GET /delay/<ms> answers 200 "ok" after ms milliseconds.

Python 3 standard library only, one asyncio loop, HTTP/1.1 keep-alive, nothing
logged per request. The test fixture (tests/fixtures/http_fixture.py) serves the
same path, but it is a thread-per-connection server that records every request
for the tests to inspect; at W3's rate (1,000 requests/s from 100 connections)
it adds ~5 ms to each answer on a 2-vCPU machine, which would be measured as the
queue's overhead. This one answers within a fraction of a millisecond of the
delay, like the peers' Node.js target.

Binds 127.0.0.1 on --port (0: a free port), prints {"port": N} when ready, and
exits on SIGTERM/SIGINT or, with --exit-with-parent, when its parent dies.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

MAX_HEADER = 64 * 1024


def response(status, body):
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def serve_connection(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)
            path = parts[1] if len(parts) == 3 else ""
            if path.startswith("/delay/") and path[7:].isdigit():
                await asyncio.sleep(int(path[7:]) / 1000)
                writer.write(response(200, b"ok"))
            elif len(parts) != 3:
                writer.write(response(400, b"bad request line"))
            else:
                writer.write(response(404, b"only /delay/<ms> is served"))
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def watch_parent(parent, stop):
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    stop.set()


async def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-with-parent", action="store_true")
    args = ap.parse_args(argv)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(serve_connection, "127.0.0.1", args.port,
                                        limit=MAX_HEADER, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    if args.exit_with_parent:
        loop.create_task(watch_parent(os.getppid(), stop))
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
