"""Replacing the raw tables' contents in one transaction with COPY.

Both loads (a directory of course-format CSV files, and the generator's stream) go through ``replace_raw_tables``:
truncate the seven tables, drop the foreign keys, COPY every table, add the foreign keys back (one set-based check
per key instead of one trigger call per row), analyze, commit. Any error rolls the whole transaction back, so the
previous rows, and the constraints, are untouched; PostgreSQL's error is turned into one message that names the
file, the line and the problem.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg2
from psycopg2 import sql

from include.greenery_data.connection import transaction
from include.greenery_data.errors import LoadError
from include.greenery_data.progress import Progress
from include.greenery_data.schema import COLUMNS, TABLES, create_tables, qualified, raw_schema

COPY_CHUNK = 256 * 1024
TIMESTAMP_COLUMNS = {"created_at", "updated_at", "estimated_delivery_at", "delivered_at"}
NUMBER_COLUMNS = {"zipcode", "discount", "price", "inventory", "order_cost", "shipping_cost", "order_total", "quantity"}


@dataclass
class TableSource:
    """Where one table's rows come from: a readable CSV stream and how to describe it in messages."""

    table: str
    open: Callable[[], IO]
    columns: tuple[str, ...] = ()
    header: bool = False
    label: str = ""
    path: Path | None = None
    expected: int = 0  # rows (or bytes, for files) the progress bar expects
    progress_unit: str = "rows"
    counted_by_source: bool = field(default=False)  # the stream reports progress itself

    def __post_init__(self) -> None:
        self.columns = self.columns or COLUMNS[self.table]
        self.label = self.label or self.table


class CountingReader:
    """Wraps a binary file so that each read advances a progress bar by the bytes read."""

    def __init__(self, raw: IO[bytes], progress: Progress):
        self.raw = raw
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.progress.update(len(data))
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.progress.update(len(data))
        return data


def replace_raw_tables(
    conn, sources: Iterable[TableSource], progress: Progress | None = None, schema: str | None = None
) -> dict[str, int]:
    """Replace the contents of all seven raw tables with ``sources`` (one per table, parents first) atomically.

    Returns the rows loaded per table. Raises LoadError with one message naming the source, line and problem.
    """
    schema = schema or raw_schema()
    progress = progress or Progress(1, enabled=False)
    sources = list(sources)
    counts: dict[str, int] = {}
    with transaction(conn), conn.cursor() as cur:
        create_tables(cur, schema)
        # Keys are checked once over the loaded rows (an index build, a join), far faster than row by row.
        keys = _drop_keys(cur, schema)
        cur.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(qualified(t, schema) for t in TABLES)))
        for source in sources:
            progress.describe(source.table)
            counts[source.table] = _copy(cur, source, progress, schema)
        for table in TABLES:
            counts.setdefault(table, 0)
        progress.describe("keys")
        cur.execute("set local maintenance_work_mem = '256MB'")
        for table, name, kind, definition in keys:
            try:
                cur.execute(
                    sql.SQL("alter table {} add constraint {} {}").format(
                        qualified(table, schema), sql.Identifier(name), sql.SQL(definition)
                    )
                )
            except psycopg2.Error as error:
                if kind == "p":
                    raise LoadError(_duplicate_key_message(error, table, sources)) from None
                raise LoadError(_foreign_key_message(error, table, sources)) from None
        progress.describe("analyze")
        for table in TABLES:
            cur.execute(sql.SQL("analyze {}").format(qualified(table, schema)))
    progress.close()
    return {table: counts[table] for table in TABLES}


def _drop_keys(cur, schema: str) -> list[tuple[str, str, str, str]]:
    """Drop the raw tables' foreign and primary keys; returns (table, name, kind, definition) to add them back
    with, primary keys first. The NOT NULL of key columns stays, so COPY still reports empty ids by line."""
    cur.execute(
        """
        select rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
        from pg_constraint as con
        join pg_class as rel on rel.oid = con.conrelid
        join pg_namespace as nsp on nsp.oid = rel.relnamespace
        where con.contype in ('p', 'f') and nsp.nspname = %s and rel.relname = any(%s)
        """,
        (schema, list(TABLES)),
    )
    load_order = {table: position for position, table in enumerate(TABLES)}
    keys = sorted(cur.fetchall(), key=lambda key: (key[2] != "p", load_order[key[0]], key[1]))
    for table, name, _, _ in reversed(keys):  # foreign keys before the primary keys they rely on
        cur.execute(sql.SQL("alter table {} drop constraint {}").format(qualified(table, schema), sql.Identifier(name)))
    return keys


def _copy(cur, source: TableSource, progress: Progress, schema: str) -> int:
    statement = sql.SQL("copy {} ({}) from stdin with (format csv, header {}, freeze true)").format(
        qualified(source.table, schema),
        sql.SQL(", ").join(sql.Identifier(c) for c in source.columns),
        sql.SQL("true" if source.header else "false"),
    )
    stream = source.open()
    try:
        reader = stream if source.counted_by_source else CountingReader(stream, progress)
        cur.copy_expert(statement.as_string(cur), reader, size=COPY_CHUNK)
    except psycopg2.Error as error:
        raise LoadError(_copy_error_message(error, source)) from None
    finally:
        stream.close()
    return cur.rowcount


# -- turning PostgreSQL's errors into one line a user can act on -----------------------------------------------

_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?")
_KEY_DETAIL = re.compile(
    r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\) (?:already exists|is duplicated|is not present)"
)


def _where(source: TableSource, line: int | None, column: str | None = None) -> str:
    where = source.label
    if line is not None:
        where += f", line {line}"
    if column:
        where += f", column {column}"
    return where


def _copy_error_message(error: psycopg2.Error, source: TableSource) -> str:
    diag = error.diag
    primary = (diag.message_primary or str(error)).strip()
    match = _CONTEXT.search(diag.context or "")
    line = int(match.group(1)) if match else None
    column = match.group(2) if match else None
    if isinstance(error, psycopg2.errors.NotNullViolation):
        return f"{_where(source, line)}: {diag.column_name or 'a key column'} is empty (it is the primary key)"
    if primary.startswith("extra data after last expected column"):
        return f"{_where(source, line)}: more fields than the {len(source.columns)} columns of the header"
    missing = re.match(r'missing data for column "(\w+)"', primary)
    if missing:
        return f"{_where(source, line)}: too few fields (nothing for column {missing.group(1)})"
    if column in TIMESTAMP_COLUMNS:
        value = _value_of(primary)
        return (
            f"{_where(source, line, column)}: malformed timestamp {value} (expected ISO 8601 like 2021-02-10T14:03:00Z)"
        )
    if column in NUMBER_COLUMNS:
        value = _value_of(primary)
        return f"{_where(source, line, column)}: malformed number {value} ({primary})"
    return f"{_where(source, line, column)}: {primary}"


def _duplicate_key_message(error: psycopg2.Error, table: str, sources: list[TableSource]) -> str:
    """For a primary key that could not be built: the value and the lines it appears on."""
    diag = error.diag
    source = next((s for s in sources if s.table == table), None)
    key = _KEY_DETAIL.search(diag.message_detail or "")
    label = source.label if source else table
    if not key or source is None:
        return f"{label}: duplicate primary key ({(diag.message_detail or diag.message_primary or str(error)).strip()})"
    columns = [c.strip() for c in key.group("columns").split(",")]
    values = key.group("values").split(", ") if len(columns) > 1 else [key.group("values")]
    wanted = dict(zip(columns, values, strict=False))
    described = ", ".join(f"{column} {value!r}" for column, value in wanted.items())
    lines = _find_lines(source, wanted, limit=2)
    if len(lines) == 2:
        return f"{_where(source, lines[1])}: duplicate primary key: {described} is already on line {lines[0]}"
    return f"{label}: duplicate primary key: {described} appears more than once"


def _value_of(primary: str) -> str:
    """The offending value in a message such as 'invalid input syntax for type integer: "abc"'."""
    found = re.search(r': (".*")$', primary)
    return found.group(1) if found else "value"


def _foreign_key_message(error: psycopg2.Error, table: str, sources: list[TableSource]) -> str:
    diag = error.diag
    key = _KEY_DETAIL.search(diag.message_detail or "")
    source = next((s for s in sources if s.table == table), None)
    if not key or source is None:
        return f"{table}: {(diag.message_primary or str(error)).strip()}"
    column, value = key.group("columns"), key.group("values")
    parent = re.search(r'table "(\w+)"', diag.message_detail or "")
    parent_name = parent.group(1) if parent else "its parent table"
    parent_source = next((s for s in sources if s.table == parent_name), None)
    parent_label = parent_source.label if parent_source else parent_name
    lines = _find_lines(source, {column: value}, limit=1)
    line = lines[0] if lines else None
    return f"{_where(source, line)}: {column} {value!r} is not in {parent_label} (orphan foreign key)"


def _find_lines(source: TableSource, wanted: dict[str, str], limit: int) -> list[int]:
    """The first ``limit`` lines of a CSV file whose columns hold ``wanted``; none for generated sources."""
    found: list[int] = []
    if source.path is None:
        return found
    with source.path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        header = [h.lstrip("\ufeff").strip() for h in header]
        try:
            positions = {header.index(c): v for c, v in wanted.items()}
        except ValueError:
            return found
        for row in reader:
            if all(i < len(row) and row[i] == v for i, v in positions.items()):
                found.append(reader.line_num)
                if len(found) >= limit:
                    break
    return found


# -- the CSV directory --------------------------------------------------------------------------------------------


def csv_sources(directory: Path) -> list[TableSource]:
    """One source per table file in ``directory``, after checking every file exists and has the right header."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LoadError(f"{directory}: no such directory (expected the seven course CSV files in it)")
    sources = []
    for table in TABLES:
        path = directory / f"{table}.csv"
        if not path.is_file():
            raise LoadError(f"{path}: file missing (a CSV directory needs {', '.join(t + '.csv' for t in TABLES)})")
        columns = _checked_header(path, table)
        sources.append(
            TableSource(
                table=table,
                open=lambda path=path: path.open("rb"),
                columns=columns,
                header=True,
                label=path.name,
                path=path,
                expected=path.stat().st_size,
                progress_unit="bytes",
            )
        )
    return sources


def _checked_header(path: Path, table: str) -> tuple[str, ...]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if not first.strip():
        raise LoadError(f"{path.name}, line 1: empty file (expected a header row: {','.join(COLUMNS[table])})")
    header = [h.strip() for h in next(csv.reader(io.StringIO(first.lstrip("\ufeff"))))]
    expected = COLUMNS[table]
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column{'s' if len(extra) > 1 else ''} {', '.join(extra)}")
    if duplicated:
        problems.append(f"repeated column{'s' if len(duplicated) > 1 else ''} {', '.join(duplicated)}")
    if problems:
        raise LoadError(f"{path.name}, line 1: {'; '.join(problems)} (expected: {','.join(expected)})")
    return tuple(header)


def load_csv_dir(conn, path: str | Path, progress: Progress | None = None) -> dict[str, int]:
    """Replace the raw tables with the seven course-format CSV files in ``path``; returns rows per table."""
    sources = csv_sources(Path(path))
    if progress is not None:
        progress.total = max(sum(s.expected for s in sources), 1)
        progress.unit = "bytes"
    return replace_raw_tables(conn, sources, progress)
