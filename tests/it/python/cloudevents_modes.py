"""Posts CloudEvents to Helios with the CloudEvents Python SDK (PyPI `cloudevents`), in
the HTTP binding's structured, binary and batched content modes, and prints what Helios
answered as one JSON object: {"<request>": {"status": int, "body": ...}}.

Each binary-mode event has a structured-mode twin with the same attributes and data but
its id, so the caller can check that both modes map to the same Helios event.

Usage: cloudevents_modes.py <base URL> <ingest API key>
"""

import http.client
import json
import sys
import urllib.parse
from datetime import datetime, timezone

from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

TIME = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def event(event_id, data, **extra):
    attributes = {
        "id": event_id,
        "source": "/python-sdk",
        "type": "sdk.test",
        # Spaces and characters outside ASCII: percent-encoded in binary mode.
        "subject": "hélios web 😀",
        "time": TIME,
        "branch": "main",
        "attempt": 3,
    }
    attributes.update(extra)
    return CloudEvent(attributes=attributes, data=data)


def post(base, key, headers, body):
    # http.client adds no Content-Type of its own (urllib would add a form type).
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = dict(headers, Authorization=f"Bearer {key}")
    conn.request("POST", "/v1/events", body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    return {"status": resp.status, "body": answer}


def main():
    base, key = sys.argv[1], sys.argv[2]
    fmt = JSONFormat()
    # (name, data, extra attributes): JSON data without a datacontenttype (so binary
    # mode sends no Content-Type at all), bytes, and text.
    kinds = [
        ("json", {"n": 1, "tags": ["a", "b"]}, {}),
        ("bytes", b"\x00\x9f\x92\x96", {"datacontenttype": "application/octet-stream"}),
        ("text", "déjà vu", {"datacontenttype": "text/plain; charset=utf-8"}),
    ]
    results = {}
    for name, data, extra in kinds:
        message = to_binary(event(f"py-binary-{name}", data, **extra), fmt)
        results[f"binary-{name}"] = post(base, key, message.headers, message.body)
        message = to_structured(event(f"py-structured-{name}", data, **extra), fmt)
        results[f"structured-{name}"] = post(base, key, message.headers, message.body)
    # Batched mode: the SDK writes no batch format of its own; a batch is a JSON array
    # of the SDK's structured JSON events.
    batch = b"[" + b",".join(
        fmt.write(event(f"py-batch-{i}", {"i": i})) for i in range(2)
    ) + b"]"
    results["batch"] = post(
        base, key, {"Content-Type": "application/cloudevents-batch+json"}, batch
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
