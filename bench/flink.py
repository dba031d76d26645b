#!/usr/bin/env python3
"""Helpers of bench/flink.sh (issue 15, done-when 5): Helios against Apache Flink.

  gen OUT N [--keys K] [--seed S]   writes N events as CSV (deterministic for a seed)
  time OUT.json -- CMD ...          runs CMD and writes its wall time and the CPU-seconds
                                    of every process it started (JVMs included)
  flink CSV [--parallelism P] [--collect]
                                    the Flink SQL job (run with the Flink venv's python);
                                    --collect prints the results' totals instead
  report --events N ...             the Markdown of the figures (bench/RESULTS.md)

The events, one CSV file read by both sides (header `id,source,type,subject,time,value`):
`id` a sequence number, `source` and `type` one letter, `subject` one of K keys (`k0` ..),
`time` ms since the epoch, about 1 ms apart and up to 3 s out of order, `value` an
integer 0..999. Helios reads it with `helios backtest --events FILE.csv`; Flink's CSV
format reads the header line as a row of nulls (`csv.ignore-parse-errors`); it gets the first
event's time (a rowtime must not be null) and the query's `WHERE id IS NOT NULL` drops it.
"""

import argparse
import ctypes
import json
import os
import random
import resource
import subprocess
import sys
import time

# 2026-01-01T00:00:00Z: the first event's time, in ms.
START_MS = 1_767_225_600_000
# The largest disorder the events have; both sides allow exactly this much.
DISORDER_MS = 3_000


def gen(out, n, keys, seed):
    """N events in time order but for a random delay of up to 3 s on one in four: the
    event's time is earlier than its position says (it arrives late), as a source with
    retries produces. Written in blocks to keep Python's per-line cost low."""
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    block = 100_000
    with open(out, "w", buffering=1 << 20) as f:
        f.write("id,source,type,subject,time,value\n")
        i = 0
        while i < n:
            m = min(block, n - i)
            rows = []
            for j in range(i, i + m):
                # About 1 ms apart: position j is at START + j ms; a quarter are late.
                t = START_MS + j
                if rng.random() < 0.25:
                    t -= rng.randrange(DISORDER_MS + 1)
                rows.append(f"{j},s,e,{names[rng.randrange(keys)]},{t},{rng.randrange(1000)}\n")
            f.write("".join(rows))
            i += m


def timed(out, cmd):
    """Runs CMD as a child of this process made a child subreaper (prctl
    PR_SET_CHILD_SUBREAPER): processes CMD starts and leaves behind (the JVM of PyFlink's
    gateway) are re-parented here, and are waited for, so RUSAGE_CHILDREN holds the CPU
    time of the whole tree once all of them have ended."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    child = subprocess.Popen(cmd)
    status = None
    peak_rss = 0
    # Reap the command and then every orphan it left until none is left.
    while True:
        try:
            pid, st, ru = os.wait4(-1, 0)
        except ChildProcessError:
            break
        peak_rss = max(peak_rss, ru.ru_maxrss)
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(st)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    sys_ = after.ru_stime - before.ru_stime
    with open(out, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "user_s": user,
                "sys_s": sys_,
                "cpu_s": user + sys_,
                "peak_rss_kib": peak_rss,
                "exit": status,
            },
            f,
        )
    sys.exit(status or 0)


def flink(csv, parallelism, collect=False):
    """Streaming Table API job: event time from `time` with a 3 s bounded-disorder
    watermark, a tumbling 1-minute COUNT(*) and SUM(value) per subject into blackhole."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.name", "helios-bench-tumbling")
    env.execute_sql(
        f"""
        CREATE TABLE events (
            id BIGINT,
            source STRING,
            type STRING,
            subject STRING,
            `time` BIGINT,
            `value` BIGINT,
            ts AS TO_TIMESTAMP_LTZ(COALESCE(`time`, {START_MS}), 3),
            WATERMARK FOR ts AS ts - INTERVAL '{DISORDER_MS // 1000}' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{os.path.abspath(csv)}',
            'format' = 'csv',
            'csv.ignore-parse-errors' = 'true'
        )"""
    )
    env.execute_sql(
        """
        CREATE TABLE sink (
            subject STRING,
            window_start TIMESTAMP(3),
            window_end TIMESTAMP(3),
            n BIGINT,
            total BIGINT
        ) WITH ('connector' = 'blackhole')"""
    )
    query = """
        SELECT subject, window_start, window_end, COUNT(*) AS n, SUM(`value`) AS total
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTES))
        WHERE id IS NOT NULL
        GROUP BY subject, window_start, window_end"""
    started = time.monotonic()
    if collect:
        # To check the answers on a small file: the window results, summed.
        windows = events = total = 0
        with env.execute_sql(query).collect() as rows:
            for row in rows:
                windows += 1
                events += row[3]
                total += row[4]
        print(json.dumps({"windows": windows, "events": events, "total": total}))
    else:
        env.execute_sql("INSERT INTO sink" + query).wait()
    print(f"flink job: {time.monotonic() - started:.2f} s", file=sys.stderr)


def report(a):
    """The Markdown section of bench/RESULTS.md from the run's figures."""
    ft = json.load(open(a.flink_time))
    ht = json.load(open(a.helios_time))
    hr = json.load(open(a.helios_report))
    lt = json.load(open(a.helios_log_time))
    lr = json.load(open(a.helios_log_report))
    n = a.events
    run, src = hr["runs"]["new"], hr["source"]
    lrun, lsrc = lr["runs"]["new"], lr["source"]

    def per_cpu(events, cpu):
        return f"{events / cpu:,.0f}" if cpu else "n/a"

    ratio = ht["cpu_s"] / ft["cpu_s"]
    rows = [
        ("Flink 2.3.0, SQL streaming, parallelism %d (python + JVM)" % a.parallelism, ft),
        ("Helios `backtest --events` (whole process)", ht),
        ("Helios `backtest --events --via-log` (whole process, for the processor figure)", lt),
    ]
    out = []
    out.append(f"| {n:,} events, 1,000 keys | wall | CPU-seconds (all processes) | events per CPU-second | peak RSS |")
    out.append("|---|---|---|---|---|")
    for name, t in rows:
        out.append(f"| {name} | {t['wall_s']:.1f} s | {t['cpu_s']:.1f} | {per_cpu(n, t['cpu_s'])} | "
                   f"{t['peak_rss_kib'] / 1024:,.0f} MiB |")
    out.append("")
    out.append("Inside the Helios processes (their own reports, `--format json`; CPU time of the "
               "thread that parses and runs the operators for the first two rows):")
    out.append("")
    out.append("| phase | wall | CPU-seconds | events per CPU-second |")
    out.append("|---|---|---|---|")
    phases = [
        ("`--events`: read and parse the CSV", src["seconds"], src.get("cpu_seconds"), src["events"]),
        ("`--events`: processor fed directly (window + emit, no decode)", run["seconds"],
         run.get("cpu_seconds"), run["events"]),
        ("`--via-log`: read the CSV, encode Avro, append to the scratch log", lsrc["seconds"],
         lsrc.get("cpu_seconds"), lsrc["events"]),
        ("`--via-log`: processor (`run_to_end`: decode + window + emit)", lrun["seconds"],
         lrun.get("cpu_seconds"), lrun["events"]),
    ]
    for name, wall, cpu, events in phases:
        out.append(f"| {name} | {wall:.1f} s | {cpu or 0:.1f} | {per_cpu(events, cpu)} |")
    out.append("")
    same = all(run[k] == lrun[k] for k in ("events", "results", "late_events", "dead_letters")) and \
        [(x["aggregate"], x["windows"], x["events"]) for x in hr["aggregates"]] == \
        [(x["aggregate"], x["windows"], x["events"]) for x in lr["aggregates"]]
    out.append(f"Helios processed {run['events']:,} events into {run['results']:,} window results "
               f"({run['late_events']} late, {run['dead_letters']} dead letters); the `--via-log` run "
               f"{'gave the same counts' if same else 'gave OTHER counts'}.")
    out.append("")
    lcpu = lrun.get("cpu_seconds")
    bar1 = ratio <= 0.2
    bar2 = lcpu is not None and lrun["events"] / lcpu >= 2_000_000
    out.append(f"- Helios's CPU-seconds are {ratio:.3f} of Flink's ({ft['cpu_s'] / ht['cpu_s']:.1f}x fewer); "
               f"bar at most 0.2: **{'met' if bar1 else 'not met'}**.")
    if lcpu:
        out.append(f"- Through the processor (decode + window + emit, `--via-log`): "
                   f"{lrun['events'] / lcpu:,.0f} events per CPU-second; "
                   f"bar at least 2,000,000: **{'met' if bar2 else 'not met'}**.")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out")
    g.add_argument("n", type=int)
    g.add_argument("--keys", type=int, default=1000)
    g.add_argument("--seed", type=int, default=15)
    t = sub.add_parser("time")
    t.add_argument("out")
    t.add_argument("command", nargs=argparse.REMAINDER)
    f = sub.add_parser("flink")
    f.add_argument("csv")
    f.add_argument("--parallelism", type=int, default=2)
    f.add_argument("--collect", action="store_true", help="count the results instead of the blackhole")
    r = sub.add_parser("report")
    r.add_argument("--events", type=int, required=True)
    r.add_argument("--parallelism", type=int, required=True)
    r.add_argument("--flink-time", required=True)
    r.add_argument("--helios-time", required=True)
    r.add_argument("--helios-report", required=True)
    r.add_argument("--helios-log-time", required=True)
    r.add_argument("--helios-log-report", required=True)
    a = p.parse_args()
    if a.cmd == "report":
        return report(a)
    if a.cmd == "gen":
        gen(a.out, a.n, a.keys, a.seed)
    elif a.cmd == "time":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        timed(a.out, cmd)
    else:
        flink(a.csv, a.parallelism, a.collect)


if __name__ == "__main__":
    main()
