"""Replays statements recorded from Helios on chDB, an in-process current ClickHouse.

Used by query-api/tests/it/chdb.rs: the Rust test records every statement Helios sends to
ClickHouse 18.16 (through a recording proxy) together with 18.16's answers, writes them as
JSON, and runs this script with the tools venv's Python (HELIOS_PYTHON), which has the
pinned `chdb-core` (scripts/test installs it).

Usage: chdb_replay.py STATEMENTS.json ANSWERS.json

STATEMENTS.json is a list of objects:
  sql       the statement as Helios sent it (for inserts: the `query` URL parameter)
  database  the `database` URL parameter, or null
  settings  the other URL parameters (ClickHouse settings), as Helios sent them
  data      for an insert, the file holding the body Helios sent (RowBinary), else null
  default_format  the `default_format` URL parameter (the answer's format), or null
  compare   for a read, the query whose answer is compared: run with `FORMAT JSONCompact`
            and `compare_settings` so both servers' answers can be compared; else null

ANSWERS.json gets one object per statement, in order: {"ok": bool, "error": text or null,
"answer": the comparison form's JSONCompact answer (meta and data) or null}.

Statements run one after another in one chDB session (one database state, as on the
server). A statement's settings apply to that statement only, as URL parameters do over
HTTP: each is SET before it and set back to its default after it. An unknown setting fails
the statement, as the HTTP interface refuses it. `readonly` is not applied: a session in
readonly mode cannot leave it, and the statements after a read still write.
"""

import json
import os
import sys
import tempfile

# toDateTime and toYYYYMM follow the server time zone; the test server runs in UTC.
os.environ["TZ"] = "UTC"

import chdb  # noqa: E402
import chdb.session  # noqa: E402

NOT_APPLIED = {"readonly"}


def quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run(session, statement):
    settings = {k: v for k, v in statement["settings"].items() if k not in NOT_APPLIED}
    applied = []

    def set_all(values):
        for name, value in values.items():
            session.query(f"SET {name} = {quote(value)}")
            applied.append(name)

    try:
        set_all(settings)
        sql = statement["sql"]
        if statement.get("data"):
            # `INSERT INTO t (cols) FORMAT RowBinary` with the body Helios sent: the same
            # statement, its data read from the file instead of the request body.
            head, sep, fmt = sql.rpartition(" FORMAT ")
            if not sep:
                raise ValueError(f"an insert with data but no FORMAT clause: {sql}")
            sql = f"{head} FROM INFILE {quote(statement['data'])} FORMAT {fmt}"
        session.query(sql, statement.get("default_format") or "TabSeparated")
        answer = None
        if statement.get("compare"):
            set_all(statement.get("compare_settings") or {})
            text = session.query(statement["compare"], "JSONCompact").bytes()
            doc = json.loads(text) if text.strip() else {"meta": [], "data": []}
            answer = {"meta": doc["meta"], "data": doc["data"]}
        return {"ok": True, "error": None, "answer": answer}
    except Exception as e:  # chDB raises its own error type with the server's message
        return {"ok": False, "error": str(e).strip(), "answer": None}
    finally:
        for name in dict.fromkeys(applied):
            session.query(f"SET {name} = DEFAULT")


def main():
    statements_path, answers_path = sys.argv[1:3]
    with open(statements_path) as f:
        statements = json.load(f)
    answers = []
    with tempfile.TemporaryDirectory(prefix="helios-chdb-") as path:
        session = chdb.session.Session(path)
        version = session.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        current = None
        for statement in statements:
            # Without a `database` parameter the server runs a statement in `default`; with
            # one it does not know, it refuses the statement.
            database = statement.get("database") or "default"
            if database != current:
                try:
                    session.query(f"USE `{database}`")
                    current = database
                except Exception as e:
                    answers.append({"ok": False, "error": str(e).strip(), "answer": None})
                    continue
            answers.append(run(session, statement))
        session.close()
    with open(answers_path, "w") as f:
        json.dump({"engine": "chDB " + chdb.__version__, "version": version, "answers": answers}, f)


if __name__ == "__main__":
    main()
