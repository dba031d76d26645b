"""Alert latency on a quiet stream (issue 17, done-when 4), driven by bench/quiet_alerts.sh.

Each round posts three failing CI runs of a new subject to a running `helios up` and
nothing else, then waits for the `ci_failing` notification at a local webhook receiver.
The figure is the time from the start of the POST carrying the third failure (the last
matching event) until the notification arrives; with no later event the partition moves
only by the watermark marks the processor writes after `idle_timeout` (ADR-012), so the
expected floor is max(idle_timeout, max_out_of_orderness) plus a poll. Rounds run one
after another, so each one's partition starts quiet.

Standard library only. Prints one JSON object on stdout and a summary on stderr.
"""

import argparse
import datetime
import http.client
import http.server
import json
import queue
import statistics
import sys
import threading
import time

received = queue.Queue()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received.put((time.monotonic(), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def post(host, port, key, events):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(
        "POST",
        "/v1/events",
        body=json.dumps(events),
        headers={
            "authorization": f"Bearer {key}",
            "content-type": "application/cloudevents-batch+json",
        },
    )
    resp = conn.getresponse()
    text = resp.read().decode()
    if resp.status != 202:
        sys.exit(f"POST /v1/events answered {resp.status}: {text}")


def percentile(sorted_values, p):
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="helios up's port on 127.0.0.1")
    ap.add_argument("--key", required=True, help="an ingest (or admin) API key")
    ap.add_argument("--receiver-port", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per round")
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.receiver_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = int(time.time())
    latencies = []
    for i in range(args.rounds):
        subject = f"quiet-{run}-{i}"
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        failures = [
            {"specversion": "1.0", "id": f"{subject}-f{n}", "source": "ci", "type": "ci.run",
             "subject": subject, "time": now, "conclusion": "failure"}
            for n in range(3)
        ]
        sent = time.monotonic()
        post("127.0.0.1", args.port, args.key, failures)
        deadline = sent + args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"round {i}: no ci_failing notification for {subject} in {args.timeout} s")
            try:
                at, body = received.get(timeout=left)
            except queue.Empty:
                continue
            if body.get("rule") == "ci_failing" and body.get("state") == "firing" \
                    and body.get("group", {}).get("subject") == subject:
                latencies.append(at - sent)
                break
        print(f"round {i}: {latencies[-1]:.3f} s", file=sys.stderr)
    s = sorted(latencies)
    figures = {
        "rounds": len(s),
        "p50_s": round(percentile(s, 50), 3),
        "p90_s": round(percentile(s, 90), 3),
        "p99_s": round(percentile(s, 99), 3),
        "max_s": round(s[-1], 3),
        "min_s": round(s[0], 3),
        "mean_s": round(statistics.mean(s), 3),
    }
    print(json.dumps(figures))
    print(f"alert latency on a quiet stream over {len(s)} rounds: p50 {figures['p50_s']} s, "
          f"p99 {figures['p99_s']} s, max {figures['max_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
