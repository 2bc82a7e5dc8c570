"""The independent oracle of the Sigma conformance test (tests/sigma_conformance.rs).

Converts every Sigma rule in RULES_DIR with pySigma's SQLite backend, loads the CloudTrail records
of RECORDS (JSON lines, gzipped) into SQLite, runs each query and prints, as one JSON document,
the matching record ids (1-based line numbers) per rule. It also builds one positive record per
rule from the rule's own detection (a minimal CloudTrail record plus the values its selections
ask for) and keeps the first candidate the SQLite query selects.

Records are flattened the way the backend's field names expect (as Zircolite does): one column
per dotted path of nested objects, named exactly like Sigma's field ("userIdentity.arn"), with
the text of the value: strings as they are, numbers as JSON spells them, booleans as
'true'/'false', objects and arrays as compact JSON (arrays are not descended into); JSON null
and absent fields are NULL. Columns are TEXT COLLATE NOCASE, as Zircolite declares them, so
string equality is case-insensitive like Sigma. REGEXP is Python's re.search.

Usage: python sigma_oracle.py RULES_DIR RECORDS
"""

import gzip
import itertools
import json
import pathlib
import re
import sqlite3
import sys

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection


def text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return value


def flatten(record, prefix="", out=None):
    out = {} if out is None else out
    for key, value in record.items():
        name = prefix + key
        if value is None:
            continue
        out[name] = text(value)
        if isinstance(value, dict):
            flatten(value, name + ".", out)
    return out


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def regexp(pattern, value):
    return value is not None and re.search(pattern, value) is not None


class Table:
    """A SQLite table of flattened records; SQLite column names are case-insensitive."""

    def __init__(self):
        self.db = sqlite3.connect(":memory:")
        self.db.create_function("REGEXP", 2, regexp, deterministic=True)
        self.db.execute("CREATE TABLE logs (record_id INTEGER PRIMARY KEY)")
        self.columns = {}
        self.collisions = set()

    def column(self, name):
        known = self.columns.get(name.lower())
        if known is None:
            self.db.execute(f"ALTER TABLE logs ADD COLUMN {quote(name)} TEXT COLLATE NOCASE")
            self.columns[name.lower()] = name
        elif known != name:
            self.collisions.add((known, name))

    def insert(self, record_id, flat):
        for name in flat:
            self.column(name)
        names = ["record_id"] + list(flat)
        self.db.execute(
            f"INSERT INTO logs ({', '.join(quote(n) for n in names)}) VALUES ({', '.join('?' for _ in names)})",
            [record_id] + list(flat.values()),
        )

    def select(self, queries):
        ids = set()
        for query in queries:
            prefix = "SELECT * FROM logs WHERE "
            assert query.startswith(prefix), query
            for (record_id,) in self.db.execute("SELECT record_id FROM logs WHERE " + query[len(prefix):]):
                ids.add(record_id)
        return sorted(ids)


BASE = {
    "eventVersion": "1.08",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAPOSITIVEEXAMPLE",
        "arn": "arn:aws:iam::123456789012:user/positive",
        "accountId": "123456789012",
        "userName": "positive",
    },
    "eventTime": "2026-01-01T00:00:00Z",
    "eventSource": "example.amazonaws.com",
    "eventName": "ExampleCall",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "positive-test",
    "requestParameters": None,
    "responseElements": None,
    "eventType": "AwsApiCall",
    "recipientAccountId": "123456789012",
}


def plain(value):
    """A string a Sigma value matches: wildcards become nothing (*) or one letter (?)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    out, chars = [], iter(value)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append(nxt if nxt in "*?\\" else "\\" + nxt)
        elif c == "*":
            continue
        elif c == "?":
            out.append("x")
        else:
            out.append(c)
    return "".join(out)


def from_regex(pattern):
    s = pattern.strip("^$")
    s = s.replace(".+", "x").replace(".*", "").replace("\\.", ".")
    return s


def set_path(record, path, value):
    keys = path.split(".")
    node = record
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


def assignments(fields):
    """(path, value) pairs that make one map of a detection match."""
    out = []
    for key, value in fields.items():
        field, *modifiers = key.split("|")
        values = value if isinstance(value, list) else [value]
        if "exists" in modifiers:
            out.append((field, "x" if value else None))
        elif "fieldref" in modifiers:
            out.append((field, "same-value"))
            out.append((values[0], "same-value"))
        elif values[0] is None:
            out.append((field, None))
        elif "re" in modifiers:
            out.append((field, from_regex(values[0])))
        else:
            parts = [plain(v) for v in values] if "all" in modifiers else [plain(values[0])]
            joined = " ".join(parts)
            if "contains" in modifiers:
                joined = "x" + joined + "x"
            elif "startswith" in modifiers:
                joined = joined + "x"
            elif "endswith" in modifiers:
                joined = "x" + joined
            out.append((field, joined))
    return out


def positive_record(rule_yaml, queries, fields, name):
    detection = rule_yaml["detection"]
    options = {}
    for key, definition in detection.items():
        if key == "condition":
            continue
        maps = definition if isinstance(definition, list) else [definition]
        options[key] = [assignments(m) for m in maps if isinstance(m, dict)]
    names = sorted(options)
    for size in range(1, len(names) + 1):
        for chosen in itertools.combinations(names, size):
            for picks in itertools.product(*(options[n] for n in chosen)):
                record = json.loads(json.dumps(BASE))
                record["eventID"] = "positive-" + name
                for pairs in picks:
                    for path, value in pairs:
                        set_path(record, path, value)
                table = Table()
                for field in fields:
                    table.column(field)
                table.insert(1, flatten(record))
                try:
                    if table.select(queries) == [1]:
                        return record
                except sqlite3.OperationalError:
                    continue
    return None


def main():
    rules_dir, records_path = pathlib.Path(sys.argv[1]), sys.argv[2]
    table = Table()
    count = 0
    with gzip.open(records_path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            table.insert(number, flatten(json.loads(line)))
            count = number
    results = {}
    for path in sorted(rules_dir.glob("*.yml")):
        source = path.read_text(encoding="utf-8")
        entry = {"title": None}
        try:
            collection = SigmaCollection.from_yaml(source)
            rule = collection.rules[0]
            entry["title"] = rule.title
            backend = sqliteBackend()
            queries = backend.convert(collection)
            fields = backend.required_fields(rule)
            for field in fields:
                table.column(field)
            entry["queries"] = queries
            entry["matches"] = table.select(queries)
            entry["positive"] = positive_record(yaml.safe_load(source), queries, fields, path.stem)
            entry["status"] = "converted"
        except Exception as error:  # the oracle's own refusal, reported per rule
            entry["status"] = "rejected"
            entry["reason"] = f"{type(error).__name__}: {error}"
        results[path.name] = entry
    json.dump(
        {"records": count, "column_collisions": sorted(map(list, table.collisions)), "rules": results},
        sys.stdout,
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
