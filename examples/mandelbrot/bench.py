#!/usr/bin/env python3
"""Mandelbrot A/B: the same 16 tiles on a `varpulis local` ensemble with 1 worker, then 4 workers.

With one worker the coordinator places all four row pipelines on it; with four, each row gets its
own process. Prints one line per run (seconds for the 16 parallel injects) and the speed-up.
Standard library only; needs the `varpulis` binary (--bin, default: on PATH).

    python3 bench.py --bin ../../target/release/varpulis --size 100
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mandelbrot  # noqa: E402


def wait_workers(base, key, count, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ws = mandelbrot.call(base, key, "GET", "/api/v1/cluster/workers", timeout=2)
            if sum(1 for w in ws["workers"] if w["status"] == "ready") >= count:
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{count} workers not ready after {timeout}s")


def run(binary, workers, args, port_base):
    coord = f"http://127.0.0.1:{port_base}"
    cmd = [binary, "local", "--workers", str(workers), "--base-port", str(port_base),
           "--worker-base-port", str(port_base + 10), "--mqtt-port", str(port_base + 50)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_workers(coord, "admin", workers)
        group_id = mandelbrot.deploy(coord, "admin")
        mandelbrot.wait_running(coord, "admin", group_id)
        best = None
        for _ in range(args.repeat):
            pixels, seconds = mandelbrot.render(coord, "admin", group_id, args.size, args.max_iter)
            assert len(pixels) == (4 * args.size) ** 2, "missing pixels"
            best = seconds if best is None else min(best, seconds)
        print(json.dumps({"workers": workers, "size": args.size, "max_iter": args.max_iter, "best_seconds": round(best, 3)}))
        return best
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="varpulis")
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--max-iter", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port-base", type=int, default=19100)
    args = ap.parse_args()
    one = run(args.bin, 1, args, args.port_base)
    four = run(args.bin, 4, args, args.port_base + 100)
    print(f"speed-up 4 workers vs 1: {one / four:.2f}x (cores on this machine: {os.cpu_count()})")


if __name__ == "__main__":
    main()
