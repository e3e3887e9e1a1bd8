"""What the profile measures first, and the form of what it finds (``profiling.profile``).

A ``TableShape`` is one table's first pass: its columns and their kinds, counts of values and distinct values, and
its categories (text columns with a few values). Every later pass builds its candidate claims from it and returns
``Finding``\\ s. ``select_row`` runs one aggregate query; ``gap`` and ``shown_value`` write measured values the way
a reviewer reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg2 import sql

from include.greenery_data.schema import COLUMNS, PRIMARY_KEYS, qualified

SECTIONS = ("columns", "keys", "dependencies", "time order")
MAX_CATEGORY_VALUES = 10  # a text column with at most this many values (and not an id) is a category
MIN_EVIDENCE_ROWS = 20  # a claim checked on fewer rows says nothing
NEAR_UNIQUE = 0.8  # a column with this share of distinct values determines anything by chance


@dataclass(frozen=True)
class Finding:
    """One claim about the data: ``violations`` of the ``checked`` rows (or values) break it, counted in
    ``unit``; both None for a plain measurement. ``measured``: what was measured besides (a range, the gaps)."""

    section: str
    subject: str  # the table, table.column or relation the claim is about
    claim: str
    violations: int | None
    checked: int | None
    measured: str = ""
    unit: str = "rows"
    near_miss_telling: bool = True  # False: a claim that nearly holds is chance, not a rule with a few defects


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "time", "number" or "text"


@dataclass
class TableShape:
    """What the first pass learned about one table; the later passes build their candidates from it."""

    name: str
    rows: int
    columns: list[Column]
    present: dict[str, int]  # column -> non-null values
    distinct: dict[str, int]  # column -> distinct values
    categories: dict[str, list[str]]  # category column -> its values
    determines: set[tuple[str, str]] = field(default_factory=set)  # (x, y): x determines y, found later
    kinds: set[str] = field(default_factory=set)  # categories that decide whether a column is set: kinds of row

    def of_kind(self, kind: str) -> list[str]:
        return [column.name for column in self.columns if column.kind == kind]

    @property
    def key(self) -> tuple[str, ...]:
        return PRIMARY_KEYS[self.name]

    def unique(self, column: str) -> bool:
        return 0 < self.present[column] == self.distinct[column]

    def near_unique(self, column: str) -> bool:
        return self.distinct[column] >= NEAR_UNIQUE * self.present[column]

    def varies(self, column: str) -> bool:
        return self.distinct[column] > 1

    def ids(self) -> list[str]:
        """Id columns that rows of the table share (a session, an order; a part of a composite key)."""
        return [
            name
            for name in self.of_kind("text")
            if name.endswith("_id") and not self.unique(name) and self.varies(name)
        ]


def select_row(cur, parts: list[sql.Composable], table: sql.Composable, tail: sql.Composable | None = None) -> tuple:
    """The one row of ``select <parts> from <table><tail>``."""
    cur.execute(sql.SQL("select {} from {}{}").format(sql.SQL(", ").join(parts), table, tail or sql.SQL("")))
    return cur.fetchone()


def _kind(data_type: str) -> str:
    if data_type.startswith("timestamp") or data_type == "date":
        return "time"
    if data_type in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return "number"
    return "text"


def table_shape(cur, schema: str, table: str) -> TableShape:
    """The first pass over ``table``: column kinds, counts, distinct values and the values of its categories."""
    cur.execute(
        "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, table),
    )
    types = dict(cur.fetchall())
    columns = [Column(name, _kind(types[name])) for name in COLUMNS[table] if name in types]
    parts: list[sql.Composable] = [sql.SQL("count(*)")]
    for column in columns:
        ident = sql.Identifier(column.name)
        parts += [sql.SQL("count({})").format(ident), sql.SQL("count(distinct {})").format(ident)]
    row = select_row(cur, parts, qualified(table, schema))
    present = {column.name: row[1 + 2 * i] for i, column in enumerate(columns)}
    distinct = {column.name: row[2 + 2 * i] for i, column in enumerate(columns)}
    categories = {}
    for column in columns:
        if (
            column.kind == "text"
            and not column.name.endswith("_id")
            and 1 < distinct[column.name] <= MAX_CATEGORY_VALUES
            and present[column.name] >= 2 * distinct[column.name]
        ):
            cur.execute(
                sql.SQL("select distinct {c} from {t} where {c} is not null order by 1").format(
                    c=sql.Identifier(column.name), t=qualified(table, schema)
                )
            )
            categories[column.name] = [value for (value,) in cur.fetchall()]
    return TableShape(table, row[0], columns, present, distinct, categories)


def gap(value: timedelta | None) -> str:
    """An interval in its two largest units: -2 d 3 h, 5 s, 0."""
    if value is None:
        return "none"
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return sign + " ".join(parts[:2])


def shown_value(value) -> str:
    """A measured minimum or maximum: a timestamp to the minute, anything else as it is."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
