#!/usr/bin/env python3
"""Distributed Mandelbrot: inject the 16 ComputeTile events through a coordinator, assemble a PNG.

Python 3 standard library only. Deploys group.json (4 row pipelines) unless --group-id is given,
injects ComputeTile{row}{col} in parallel through POST /api/v1/cluster/pipeline-groups/{id}/inject
(the coordinator routes ComputeTile{row}* to pipeline row{row}), collects the returned Pixel
events and writes a grayscale PNG.

    python3 mandelbrot.py --coordinator http://127.0.0.1:9100 --api-key admin --size 50 --out m.png
"""
import argparse
import concurrent.futures
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def call(base, key, method, path, body=None, timeout=600):
    """One JSON request; returns the parsed answer or raises RuntimeError with status and error."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except ValueError:
            pass
        raise RuntimeError(f"{method} {path}: HTTP {e.code}: {text}") from None


def deploy(base, key):
    with open(os.path.join(HERE, "group.json")) as f:
        spec = json.load(f)
    group = call(base, key, "POST", "/api/v1/cluster/pipeline-groups", spec)
    return group["id"]


def wait_running(base, key, group_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        group = call(base, key, "GET", f"/api/v1/cluster/pipeline-groups/{group_id}")
        if group.get("status") == "running":
            return
        time.sleep(0.2)
    raise RuntimeError(f"group {group_id} not running after {timeout}s")


def render(base, key, group_id, size, max_iter):
    """Injects the 16 tiles in parallel; returns (pixels, seconds)."""
    def one(rc):
        r, c = rc
        body = {"event_type": f"ComputeTile{r}{c}", "fields": {"size": size, "max_iter": max_iter}}
        answer = call(base, key, "POST", f"/api/v1/cluster/pipeline-groups/{group_id}/inject", body)
        return answer["worker_response"]["output_events"]

    started = time.time()
    tiles = [(r, c) for r in range(4) for c in range(4)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, tiles))
    seconds = time.time() - started
    pixels = [e["fields"] for events in results for e in events if e["event_type"] == "Pixel"]
    return pixels, seconds


def write_png(path, width, pixels, max_iter):
    """8-bit grayscale PNG: points of the set are black, the rest shaded by escape time."""
    rows = [bytearray(width) for _ in range(width)]
    for p in pixels:
        x, y, it = int(p["x"]), int(p["y"]), int(p["iterations"])
        if 0 <= x < width and 0 <= y < width:
            rows[y][x] = 0 if it >= max_iter else 255 - (255 * it) // max_iter
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coordinator", default=os.environ.get("VARPULIS_COORDINATOR", "http://127.0.0.1:9100").split(",")[0])
    ap.add_argument("--api-key", default=os.environ.get("VARPULIS_API_KEY", "admin"))
    ap.add_argument("--group-id", help="use an already deployed group instead of deploying group.json")
    ap.add_argument("--size", type=int, default=250, help="tile side in pixels (image = 4*size)")
    ap.add_argument("--max-iter", type=int, default=256)
    ap.add_argument("--out", default="mandelbrot.png")
    ap.add_argument("--keep", action="store_true", help="do not tear the group down at the end")
    args = ap.parse_args()

    group_id = args.group_id or deploy(args.coordinator, args.api_key)
    try:
        wait_running(args.coordinator, args.api_key, group_id)
        pixels, seconds = render(args.coordinator, args.api_key, group_id, args.size, args.max_iter)
    finally:
        if not args.group_id and not args.keep:
            call(args.coordinator, args.api_key, "DELETE", f"/api/v1/cluster/pipeline-groups/{group_id}")
    width = 4 * args.size
    write_png(args.out, width, pixels, args.max_iter)
    print(json.dumps({"pixels": len(pixels), "expected": width * width, "seconds": round(seconds, 3), "png": args.out}))
    return 0 if len(pixels) == width * width else 1


if __name__ == "__main__":
    sys.exit(main())
