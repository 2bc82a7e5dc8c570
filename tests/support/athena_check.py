"""Reads delivered CloudTrail files the way Athena would through a CREATE EXTERNAL TABLE, with DuckDB.

Usage: athena_check.py DDL_FILE BUCKET_NAME BUCKET_DIR

BUCKET_DIR holds the bucket's objects, keys as paths. Only the DDL text is used to find and type the
data: the table's LOCATION, its partition projection (enum and date types) and storage.location.template
give the partition folders; the column list gives the types. DuckDB reads each partition's *.json.gz,
unwraps {"Records": [...]} (what CloudTrailInputFormat does), and types each record with the declared
columns (what the HCatalog JsonSerDe does: keys matched case-insensitively, missing keys NULL, scalars
and objects declared STRING as text).

Prints JSON: table, columns, partition keys, one entry per non-empty partition (its values, file and
row counts, distinct event ids, rows whose recipientaccountid/awsregion differ from the partition, rows
whose eventtime is after the folder date), non-NULL counts per column, and the log files under LOCATION
that no projected partition reaches.
"""

import datetime
import json
import os
import re
import sys

import duckdb


def fail(message):
    print(f"athena_check: {message}", file=sys.stderr)
    sys.exit(2)


# --- the DDL ------------------------------------------------------------------------------------


def strip_comments(text):
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def balanced_block(text, start):
    """The text inside the parenthesis opening at text[start], and the index after its close."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    fail("unbalanced parentheses in the DDL")


def split_top_level(text):
    """Splits on commas outside <...> and (...)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


class TypeParser:
    """Hive types (STRING, STRUCT<a: T, ...>, ARRAY<T>, MAP<K,V>) to DuckDB json_transform structures."""

    TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|<|>|,|:)")

    def __init__(self, text):
        self.tokens = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = self.TOKEN.match(text, position)
            if not match:
                fail(f"cannot read type {text!r} at {position}")
            self.tokens.append(match.group(1))
            position = match.end()
        self.i = 0

    def next(self):
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, token):
        got = self.next()
        if got != token:
            fail(f"expected {token!r}, got {got!r}")

    def parse(self):
        name = self.next().upper()
        if name == "STRUCT":
            self.expect("<")
            fields = {}
            while True:
                field = self.next()
                self.expect(":")
                fields[field.lower()] = self.parse()
                token = self.next()
                if token == ">":
                    return fields
                if token != ",":
                    fail(f"expected ',' or '>' in STRUCT, got {token!r}")
        if name == "ARRAY":
            self.expect("<")
            element = self.parse()
            self.expect(">")
            return [element]
        if name == "MAP":
            self.expect("<")
            key = self.parse()
            self.expect(",")
            value = self.parse()
            self.expect(">")
            if not (isinstance(key, str) and isinstance(value, str)):
                fail("only MAP of scalars is supported")
            return f"MAP({key}, {value})"
        scalars = {"STRING": "VARCHAR", "BOOLEAN": "BOOLEAN", "INT": "INTEGER", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE"}
        if name not in scalars:
            fail(f"unsupported type {name}")
        return scalars[name]


def parse_ddl(text):
    text = strip_comments(text)
    table = re.search(r"CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z0-9_.`]+)\s*\(", text, re.I)
    if not table:
        fail("no CREATE EXTERNAL TABLE")
    body, after = balanced_block(text, table.end() - 1)
    columns = {}
    for item in split_top_level(body):
        name, type_text = item.split(None, 1)
        parser = TypeParser(type_text)
        columns[name.strip("`").lower()] = parser.parse()
    partitioned = re.compile(r"PARTITIONED\s+BY\s*\(", re.I).search(text, after)
    if not partitioned:
        fail("no PARTITIONED BY")
    block, _ = balanced_block(text, partitioned.end() - 1)
    partition_keys = [item.split(None, 1)[0].strip("`").lower() for item in split_top_level(block)]
    location = re.search(r"LOCATION\s+'([^']*)'", text, re.I)
    if not location:
        fail("no LOCATION")
    properties_start = re.compile(r"TBLPROPERTIES\s*\(", re.I).search(text)
    if not properties_start:
        fail("no TBLPROPERTIES")
    block, _ = balanced_block(text, properties_start.end() - 1)
    properties = dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", block))
    return table.group(1).strip("`"), columns, partition_keys, location.group(1), properties


# --- partition projection -------------------------------------------------------------------------


def java_date_format(pattern):
    """The few Java date pattern letters CloudTrail layouts use."""
    out = pattern
    for java, python in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H")):
        out = out.replace(java, python)
    if re.search(r"[A-Za-z]", out.replace("%Y", "").replace("%m", "").replace("%d", "").replace("%H", "")):
        fail(f"unsupported date format {pattern!r}")
    return out


def projected_values(key, properties):
    kind = properties.get(f"projection.{key}.type")
    if kind == "enum":
        return [v for v in properties[f"projection.{key}.values"].split(",") if v]
    if kind == "date":
        fmt = java_date_format(properties[f"projection.{key}.format"])
        start_text, end_text = properties[f"projection.{key}.range"].split(",")
        unit = properties.get(f"projection.{key}.interval.unit", "DAYS")
        interval = int(properties.get(f"projection.{key}.interval", "1"))
        if unit != "DAYS":
            fail(f"unsupported interval unit {unit}")
        start = datetime.datetime.strptime(start_text, fmt).date()
        today = datetime.datetime.now(datetime.timezone.utc).date()
        end = today if end_text.strip() == "NOW" else datetime.datetime.strptime(end_text, fmt).date()
        values, day = [], start
        while day <= end:
            values.append(day.strftime(fmt))
            day += datetime.timedelta(days=interval)
        return values
    fail(f"projection of {key!r}: type {kind!r} cannot be enumerated (injected needs a query predicate)")


def expand(template, keys, properties):
    """Every (values, path template filled in) the projection reaches."""
    combos = [({}, template)]
    for key in keys:
        values = projected_values(key, properties)
        combos = [({**seen, key: v}, text.replace("${" + key + "}", v)) for seen, text in combos for v in values]
    return combos


# --- reading --------------------------------------------------------------------------------------


def fold_keys_for(structure):
    """A function lowercasing the JSON keys along the declared STRUCT paths (the SerDe's case-insensitive
    match). Keys inside columns declared STRING keep their case: the SerDe returns that text as is."""

    def fold(value, shape):
        if isinstance(shape, dict) and isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                lower = key.lower()
                if lower in out:
                    raise ValueError(f"keys differing only in case: {key!r}")
                out[lower] = fold(inner, shape.get(lower))
            return out
        if isinstance(shape, list) and isinstance(value, list):
            return [fold(v, shape[0]) for v in value]
        return value

    def run(text):
        return json.dumps(fold(json.loads(text), structure))

    return run


def main():
    if len(sys.argv) != 4:
        fail("usage: athena_check.py DDL_FILE BUCKET_NAME BUCKET_DIR")
    ddl_path, bucket, bucket_dir = sys.argv[1:]
    with open(ddl_path) as f:
        table, columns, partition_keys, location, properties = parse_ddl(f.read())
    if properties.get("projection.enabled") != "true":
        fail("projection.enabled is not 'true'")
    template = properties.get("storage.location.template")
    root = f"s3://{bucket}/"
    if not template or not template.startswith(location) or not location.startswith(root):
        fail(f"template {template!r} is not under LOCATION {location!r} in bucket {bucket}")
    for key in partition_keys:
        if "${" + key + "}" not in template:
            fail(f"partition key {key} is not in the template")

    structure = json.dumps(columns)
    db = duckdb.connect()
    db.create_function("fold_keys", fold_keys_for(columns), ["VARCHAR"], "VARCHAR")
    selects = ", ".join(f"count(t.{name}) AS {name}" for name in columns)

    partitions, reached, non_null = [], set(), {name: 0 for name in columns}
    for values, url in expand(template, partition_keys, properties):
        directory = os.path.join(bucket_dir, url[len(root) :])
        if not os.path.isdir(directory):
            continue
        files = sorted(f for f in os.listdir(directory) if f.endswith(".json.gz"))
        reached.update(os.path.join(directory, f) for f in files)
        if not files:
            continue
        glob = os.path.join(directory, "*.json.gz").replace("'", "''")
        folder_day = values.get("timestamp", "").replace("/", "-")
        query = f"""
            WITH typed AS (
                SELECT from_json(fold_keys(r::VARCHAR), '{structure}') AS t
                FROM (SELECT unnest(Records) AS r
                      FROM read_json('{glob}', format = 'auto', columns = {{'Records': 'JSON[]'}}))
            )
            SELECT count(*) AS rows,
                   count(DISTINCT t.eventid) AS distinct_event_ids,
                   count(*) FILTER (WHERE t.recipientaccountid IS DISTINCT FROM $account) AS other_account,
                   count(*) FILTER (WHERE t.awsregion IS DISTINCT FROM $region) AS other_region,
                   count(*) FILTER (WHERE t.eventtime > $day || 'T23:59:59Z') AS after_folder_date,
                   count(*) FILTER (WHERE t.readonly IS NOT NULL AND t.readonly NOT IN ('true', 'false'))
                       AS odd_readonly,
                   count(t.useridentity.arn) AS identity_arns,
                   {selects}
            FROM typed
        """
        parameters = {"account": values.get("account"), "region": values.get("region"), "day": folder_day}
        if "account" not in values:
            query = query.replace("t.recipientaccountid IS DISTINCT FROM $account", "false")
            del parameters["account"]
        cursor = db.execute(query, parameters)
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchone()))
        for name in columns:
            non_null[name] += row.pop(name)
        partitions.append({"values": values, "files": len(files), **row})

    location_dir = os.path.join(bucket_dir, location[len(root) :])
    unreachable = []
    for directory, _, files in os.walk(location_dir):
        for name in files:
            path = os.path.join(directory, name)
            if "_CloudTrail_" in name and name.endswith(".json.gz") and path not in reached:
                unreachable.append(os.path.relpath(path, bucket_dir))

    print(
        json.dumps(
            {
                "table": table,
                "columns": list(columns),
                "partition_keys": partition_keys,
                "partitions": partitions,
                "non_null": non_null,
                "unreachable_files": sorted(unreachable),
            }
        )
    )


if __name__ == "__main__":
    main()
