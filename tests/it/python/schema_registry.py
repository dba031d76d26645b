"""Uses the Confluent Python client's SchemaRegistryClient (PyPI `confluent-kafka`)
against Helios's embedded registry, authenticating with `basic.auth.user.info` as
Confluent's clients do, and prints what happened as one JSON object.

Usage: schema_registry.py <base URL> <admin key> <read key>
Keys are `hel_<id>_<secret>`; the admin key is sent as user = id, password = secret, the
read key as any user with the whole key as password.
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

SUBJECT = "python-client-value"
V1 = {
    "type": "record",
    "name": "Reading",
    "namespace": "test.python",
    "fields": [{"name": "value", "type": "double"}],
}
# Backward compatible: a new field with a default.
V2 = dict(V1, fields=V1["fields"] + [{"name": "unit", "type": "string", "default": "C"}])
# Not backward compatible: a new field without a default.
BAD = dict(V1, fields=V1["fields"] + [{"name": "unit", "type": "string"}])


def client(url, user_info):
    return SchemaRegistryClient({"url": url, "basic.auth.user.info": user_info})


def refused(call):
    """The HTTP status of a call the registry refused, or None if it succeeded."""
    try:
        call()
    except SchemaRegistryError as e:
        return e.http_status_code
    return None


def main():
    url, admin, read = sys.argv[1:4]
    admin_id, admin_secret = admin[len("hel_"):].split("_", 1)
    out = {}

    writer = client(url, f"{admin_id}:{admin_secret}")
    schema_id = writer.register_schema(SUBJECT, Schema(json.dumps(V1), "AVRO"))
    out["registered_id"] = schema_id
    found = writer.lookup_schema(SUBJECT, Schema(json.dumps(V1), "AVRO"))
    out["lookup"] = {"id": found.schema_id, "version": found.version, "subject": found.subject}
    out["compatible"] = writer.test_compatibility(SUBJECT, Schema(json.dumps(V2), "AVRO"))
    out["incompatible"] = writer.test_compatibility(SUBJECT, Schema(json.dumps(BAD), "AVRO"))

    reader = client(url, f"python:{read}")
    out["reader_subjects"] = reader.get_subjects()
    out["reader_latest_id"] = reader.get_latest_version(SUBJECT).schema_id
    out["reader_register_status"] = refused(
        lambda: reader.register_schema(SUBJECT, Schema(json.dumps(V2), "AVRO"))
    )

    wrong_secret = admin_secret[:-1] + ("1" if admin_secret.endswith("0") else "0")
    for name, info in [
        ("wrong_secret", f"{admin_id}:{wrong_secret}"),
        ("unknown_key", "python:hel_000000000000_" + "ab" * 32),
        ("not_a_key", "python:secret"),
    ]:
        out[f"{name}_status"] = refused(lambda info=info: client(url, info).get_subjects())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
