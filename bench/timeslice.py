#!/usr/bin/env python3
"""Runs several benchmark commands on one core at once, in turns of a fixed slice.

A shared VM's speed drifts by 10-30 % over seconds to minutes (other tenants on the host's
caches and memory bus). Runs one after another each meet a different machine, so their
ratio carries that drift. Here every command gets the core in turn, `--slice-ms` at a
time (the others are stopped with SIGSTOP meanwhile), so all of them run through the same
minutes and a drift slower than a few slices weighs on each alike. A command's CPU time
is its own (a stopped process uses none); each turn starts with caches warm for another
command, a refill of well under a millisecond against a slice of hundreds.

Usage: timeslice.py [--slice-ms N] [--cpu C] NAME ENV_JSON ARGV_JSON [NAME ENV_JSON ARGV_JSON ...]
Prints one line per command, in the order given: NAME, a space, its standard output
(stripped). Exits non-zero, naming the command, if one fails.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slice-ms", type=int, default=500, help="turn length (default 500)")
    parser.add_argument("--cpu", type=int, default=0, help="the core all commands share (default 0)")
    parser.add_argument("commands", nargs="+", help="NAME ENV_JSON ARGV_JSON, repeated")
    args = parser.parse_args()
    if len(args.commands) % 3 != 0:
        parser.error("commands come in threes: NAME ENV_JSON ARGV_JSON")
    specs = [args.commands[i : i + 3] for i in range(0, len(args.commands), 3)]

    # Stopped children outlive a killed parent, stopped for good: on SIGTERM or SIGHUP
    # (a closed terminal) unwind through the `finally` below, which kills them.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    procs = []
    try:
        for name, env_json, argv_json in specs:
            env = dict(os.environ, **json.loads(env_json))
            argv = ["taskset", "-c", str(args.cpu), *json.loads(argv_json)]
            # The shell stops itself before it becomes the command, so no command runs
            # before its first turn (the pid stays the same across the exec).
            p = subprocess.Popen(
                ["sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                # Each in its own process group, whose parent (this script) is in another group
                # of the same session: a group with a stopped member whose parent has left is
                # orphaned, and the kernel hangs it up (SIGHUP), e.g. when the shell that
                # started this script in the background exits.
                process_group=0,
            )
            procs.append((name, p))
        for _, p in procs:
            wait_stopped(p.pid)

        turn = 0
        while any(p.poll() is None for _, p in procs):
            alive = [i for i, (_, p) in enumerate(procs) if p.poll() is None]
            i = next((j for j in alive if j >= turn), alive[0])
            p = procs[i][1]
            os.kill(p.pid, signal.SIGCONT)
            deadline = time.monotonic() + args.slice_ms / 1000
            while time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.005)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGSTOP)
                wait_stopped(p.pid)
            turn = i + 1
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()

    failed = False
    for name, p in procs:
        out = p.stdout.read().decode().strip() if p.stdout else ""
        if p.wait() != 0:
            print(f"timeslice.py: {name} exited with {p.returncode}", file=sys.stderr)
            failed = True
        print(f"{name} {out}")
    return 1 if failed else 0


def wait_stopped(pid: int) -> None:
    """Waits until `pid` is stopped (state T) or gone, so no two commands overlap."""
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        if state in ("T", "t", "Z", "X"):
            return
        time.sleep(0.001)


if __name__ == "__main__":
    sys.exit(main())
