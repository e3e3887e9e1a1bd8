"""A profile of the raw tables, computed from their rows: what the data's own shape says could be a rule.

``profile(conn)`` measures the loaded raw tables with SQL and returns findings, each a claim about the data with
the rows (or groups) that break it and what was measured:

- columns: nulls, distinct values, value ranges and the earliest and latest dates;
- keys: text columns with no repeated value, pairs of id and category columns that identify a row, and columns
  unique within one value of a category (an ``event_type``, a ``status``);
- dependencies within a row: which category decides whether a column is set, which column determines another,
  which text column restates another column's value, which amount is the sum or difference of two others;
- time order: which timestamp comes first within a row, across a relation (a row and the row its key names), and
  between the categories of rows that share a key (which event comes before which in a session); how long the
  rows that share a key last.

Nothing here knows greenery's rules. Candidates come from the schema (``schema.COLUMNS``, ``PRIMARY_KEYS``), the
column types and names: a column named like another table's one-column key is a relation, a text column with a
few values (not an id) is a category. docs/data-contracts.md reviews the candidates into kept and rejected rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations, permutations

from psycopg2 import sql

from include.greenery_data.schema import COLUMNS, PRIMARY_KEYS, TABLES, qualified, raw_schema

SECTIONS = ("columns", "keys", "dependencies", "time order")
MAX_CATEGORY_VALUES = 10  # a text column with at most this many values (and not an id) is a category
MIN_EVIDENCE_ROWS = 20  # a claim checked on fewer rows says nothing
NEAR_UNIQUE = 0.8  # a column with this share of distinct values determines anything by chance
MIN_RESTATED_LENGTH = 3  # shorter values are found inside any text by chance
TELLING_SPAN = 10  # a group's span without a category is worth showing when this many times shorter


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


def profile(conn, schema: str | None = None) -> list[Finding]:
    """Every finding about the raw tables in ``schema`` (default: the raw schema). Reads only; the transaction is
    rolled back."""
    schema = schema or raw_schema()
    found: list[Finding] = []
    try:
        with conn.cursor() as cur:
            shapes = {table: _table_shape(cur, schema, table) for table in TABLES}
            for shape in shapes.values():
                found += _columns(cur, schema, shape)
                found += _null_patterns(cur, schema, shape)
                found += _keys(cur, schema, shape)
                found += _determinations(cur, schema, shape)
                found += _restatements(cur, schema, shape)
                found += _sums(cur, schema, shape)
                found += _row_time_order(cur, schema, shape)
                found += _category_time_order(cur, schema, shape)
            for child, column, parent in relations(shapes):
                found += _relation_time_order(cur, schema, shapes[child], column, shapes[parent], found)
    finally:
        conn.rollback()
    return found


def relations(shapes: dict[str, TableShape]) -> list[tuple[str, str, str]]:
    """(child table, column, parent table) for each column named like another table's one-column primary key."""
    parents = {shape.key[0]: table for table, shape in shapes.items() if len(shape.key) == 1}
    return [
        (table, column.name, parents[column.name])
        for table, shape in shapes.items()
        for column in shape.columns
        if column.name in parents and parents[column.name] != table
    ]


def _select(cur, parts: list[sql.Composable], table: sql.Composable, tail: sql.Composable | None = None) -> tuple:
    cur.execute(sql.SQL("select {} from {}{}").format(sql.SQL(", ").join(parts), table, tail or sql.SQL("")))
    return cur.fetchone()


# -- first pass: types, counts, categories ------------------------------------------------------------------------


def _kind(data_type: str) -> str:
    if data_type.startswith("timestamp") or data_type == "date":
        return "time"
    if data_type in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return "number"
    return "text"


def _table_shape(cur, schema: str, table: str) -> TableShape:
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
    row = _select(cur, parts, qualified(table, schema))
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


# -- columns ------------------------------------------------------------------------------------------------------


def _columns(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Rows; per column its nulls, distinct values and range (of lengths for text; the values of a category)."""
    parts = []
    for column in shape.columns:
        ident = sql.Identifier(column.name)
        value = sql.SQL("length({})").format(ident) if column.kind == "text" else ident
        parts += [sql.SQL("min({})").format(value), sql.SQL("max({})").format(value)]
    row = _select(cur, parts, qualified(shape.name, schema))
    found = [Finding("columns", shape.name, "rows", None, None, f"{shape.rows:,}")]
    for i, column in enumerate(shape.columns):
        low, high = row[2 * i], row[2 * i + 1]
        if column.name in shape.categories:
            spread = "values " + ", ".join(shape.categories[column.name])
        elif low is None:
            spread = "all null"
        elif column.kind == "text":
            spread = f"length {low}..{high}"
        else:
            spread = f"{_value(low)} .. {_value(high)}"
        nulls = shape.rows - shape.present[column.name]
        found.append(
            Finding(
                "columns",
                f"{shape.name}.{column.name}",
                "range",
                None,
                None,
                f"{nulls:,} null, {shape.distinct[column.name]:,} distinct, {spread}",
            )
        )
    return found


# -- keys ---------------------------------------------------------------------------------------------------------


def _keys(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Text columns with no repeated value; pairs of ids and categories that identify a row; columns unique within
    one kind of row (one value of a category that decides which columns are set, such as event_type)."""
    found = []
    for name in shape.of_kind("text"):
        if shape.varies(name) and shape.present[name] >= MIN_EVIDENCE_ROWS:
            repeats = shape.present[name] - shape.distinct[name]
            found.append(
                Finding("keys", f"{shape.name}.{name}", "unique", repeats, shape.present[name], unit="repeats")
            )
    # Pairs of ids and categories, neither unique alone (a pair holding a unique column is unique anyway).
    grouping = [name for name in [*shape.ids(), *shape.categories] if not shape.near_unique(name)]
    pairs = list(combinations(grouping, 2))
    if pairs and shape.rows >= MIN_EVIDENCE_ROWS:
        row = _select(
            cur,
            [
                sql.SQL("count(*) - count(distinct ({a}, {b}))").format(a=sql.Identifier(a), b=sql.Identifier(b))
                for a, b in pairs
            ],
            qualified(shape.name, schema),
        )
        for (a, b), repeats in zip(pairs, row, strict=True):
            found.append(Finding("keys", shape.name, f"unique ({a}, {b})", repeats, shape.rows, unit="repeats"))
    others = [name for name in shape.of_kind("text") if shape.varies(name) and not shape.unique(name)]
    for category in sorted(shape.kinds):
        within = [name for name in others if name != category]
        if not within:
            continue
        cur.execute(
            sql.SQL("select {cat}, {parts} from {t} where {cat} is not null group by {cat} order by {cat}").format(
                cat=sql.Identifier(category),
                parts=sql.SQL(", ").join(
                    sql.SQL("count({c}), count({c}) - count(distinct {c})").format(c=sql.Identifier(name))
                    for name in within
                ),
                t=qualified(shape.name, schema),
            )
        )
        for value, *counts in cur.fetchall():
            for i, name in enumerate(within):
                present, repeats = counts[2 * i], counts[2 * i + 1]
                if present >= MIN_EVIDENCE_ROWS:
                    found.append(
                        Finding(
                            "keys",
                            f"{shape.name}.{name}",
                            f"unique where {category} = '{value}'",
                            repeats,
                            present,
                            unit="repeats",
                        )
                    )
    return found


# -- dependencies within a row ------------------------------------------------------------------------------------


def _null_patterns(cur, schema: str, shape: TableShape) -> list[Finding]:
    """For each category and each column that is sometimes null: the category values for which it is set (in
    most rows); the rows that differ break the claim."""
    found = []
    for category, values in shape.categories.items():
        others = [c.name for c in shape.columns if c.name != category and shape.present[c.name] < shape.rows]
        if not others:
            continue
        cur.execute(
            sql.SQL("select {cat}, count(*), {parts} from {t} where {cat} is not null group by {cat}").format(
                cat=sql.Identifier(category),
                parts=sql.SQL(", ").join(sql.SQL("count({})").format(sql.Identifier(name)) for name in others),
                t=qualified(shape.name, schema),
            )
        )
        counts = {value: (rows, present) for value, rows, *present in cur.fetchall()}
        for i, name in enumerate(others):
            set_for = [value for value in values if 2 * counts[value][1][i] > counts[value][0]]
            if not set_for or len(set_for) == len(values):
                continue  # set or null whatever the category: the category says nothing about it
            off = sum(
                rows - present[i] if value in set_for else present[i] for value, (rows, present) in counts.items()
            )
            if off == 0:
                shape.kinds.add(category)
            found.append(
                Finding(
                    "dependencies",
                    f"{shape.name}.{name}",
                    f"set exactly when {category} in ({', '.join(set_for)})",
                    off,
                    shape.rows,
                )
            )
    return found


def _determinations(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Column X determines column Y: no value of X comes with two values of Y. Only an X that repeats enough for
    that to mean something (not unique or nearly so) and a Y that varies."""
    determining = [
        c.name
        for c in shape.columns
        if c.name not in shape.key and shape.varies(c.name) and not shape.near_unique(c.name)
    ]
    determined = [c.name for c in shape.columns if c.name not in shape.key and shape.varies(c.name)]
    pairs = [(x, y) for x in determining for y in determined if x != y]
    if not pairs:
        return []
    row = _select(
        cur,
        [
            sql.SQL("count(distinct ({x}, {y})) filter (where {x} is not null) - count(distinct {x})").format(
                x=sql.Identifier(x), y=sql.Identifier(y)
            )
            for x, y in pairs
        ],
        qualified(shape.name, schema),
    )
    found = []
    for (x, y), extra in zip(pairs, row, strict=True):
        if extra == 0:
            shape.determines.add((x, y))
        found.append(
            Finding(
                "dependencies",
                f"{shape.name}.{x}",
                f"determines {y}",
                extra,
                shape.distinct[x],
                unit=f"values with a second {y}",
                near_miss_telling=False,
            )
        )
    return found


def _restatements(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Text column X contains the value of text column Y (case-insensitive), in the rows where both are set."""
    texts = [name for name in shape.of_kind("text") if shape.varies(name)]
    pairs = list(permutations(texts, 2))
    if not pairs:
        return []
    parts = []
    for x, y in pairs:
        both = sql.SQL("{x} is not null and length({y}) >= {n}").format(
            x=sql.Identifier(x), y=sql.Identifier(y), n=sql.Literal(MIN_RESTATED_LENGTH)
        )
        parts += [
            sql.SQL("count(*) filter (where {})").format(both),
            sql.SQL("count(*) filter (where {both} and strpos(lower({x}), lower({y})) = 0)").format(
                both=both, x=sql.Identifier(x), y=sql.Identifier(y)
            ),
        ]
    row = _select(cur, parts, qualified(shape.name, schema))
    return [
        Finding("dependencies", f"{shape.name}.{x}", f"contains {y}", row[2 * i + 1], row[2 * i])
        for i, (x, y) in enumerate(pairs)
        if row[2 * i] >= MIN_EVIDENCE_ROWS
    ]


def _sums(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Amount A = B + C within the row (which also covers B = A - C)."""
    numbers = shape.of_kind("number")
    # a = b + c is also b = a - c and c = a - b: each triple has three distinct sums, one per column on the left.
    forms = [(a, b, "+", c) for a in numbers for b, c in combinations([n for n in numbers if n != a], 2)]
    if not forms:
        return []
    parts = []
    for a, b, op, c in forms:
        ids = {"a": sql.Identifier(a), "b": sql.Identifier(b), "c": sql.Identifier(c), "op": sql.SQL(op)}
        parts += [
            sql.SQL("count(*) filter (where {a} is not null and {b} is not null and {c} is not null)").format(**ids),
            sql.SQL("count(*) filter (where {a} <> {b} {op} {c})").format(**ids),
        ]
    row = _select(cur, parts, qualified(shape.name, schema))
    return [
        Finding("dependencies", f"{shape.name}.{a}", f"= {b} {op} {c}", row[2 * i + 1], row[2 * i])
        for i, (a, b, op, c) in enumerate(forms)
        if row[2 * i] >= MIN_EVIDENCE_ROWS
    ]


# -- time order ---------------------------------------------------------------------------------------------------


def _oriented(first: str, second: str, rows: int, first_later: int, low, high) -> tuple[str, int, str]:
    """The claim in the direction most rows follow, the rows that break it and the measured gaps: ``low`` and
    ``high`` are the smallest and largest ``second - first``."""
    if 2 * first_later > rows:
        return f"{second} <= {first}", rows - first_later, f"{first} - {second}: {_gap(-high)} .. {_gap(-low)}"
    return f"{first} <= {second}", first_later, f"{second} - {first}: {_gap(low)} .. {_gap(high)}"


def _row_time_order(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Each pair of timestamps of one row: which comes first, and by how much."""
    found = []
    for a, b in combinations(shape.of_kind("time"), 2):
        rows, later, low, high = _select(
            cur,
            [
                sql.SQL("count(*)"),
                sql.SQL("count(*) filter (where {a} > {b})").format(a=sql.Identifier(a), b=sql.Identifier(b)),
                sql.SQL("min({b} - {a})").format(a=sql.Identifier(a), b=sql.Identifier(b)),
                sql.SQL("max({b} - {a})").format(a=sql.Identifier(a), b=sql.Identifier(b)),
            ],
            qualified(shape.name, schema),
            sql.SQL(" where {} is not null and {} is not null").format(sql.Identifier(a), sql.Identifier(b)),
        )
        if rows >= MIN_EVIDENCE_ROWS:
            claim, broken, evidence = _oriented(a, b, rows, later, low, high)
            found.append(Finding("time order", shape.name, claim, broken, rows, evidence))
    return found


def _relation_time_order(
    cur, schema: str, child: TableShape, column: str, parent: TableShape, known: Iterable[Finding]
) -> list[Finding]:
    """Each timestamp of a row against each timestamp of the row its key names, split by the child's category
    when that category decides whether the key is set (as event_type does for order_id)."""
    split = next(
        (
            category
            for category in child.categories
            for finding in known
            if finding.subject == f"{child.name}.{column}"
            and finding.claim.startswith(f"set exactly when {category} in ")
        ),
        None,
    )
    found = []
    for mine in child.of_kind("time"):
        for theirs in parent.of_kind("time"):
            ids = {
                "c": sql.Identifier(mine),
                "p": sql.Identifier(theirs),
                "key": sql.Identifier(column),
                "child": qualified(child.name, schema),
                "parent": qualified(parent.name, schema),
                "split": sql.SQL("child.{}").format(sql.Identifier(split)) if split else sql.SQL("null::text"),
            }
            cur.execute(
                sql.SQL(
                    "select {split}, count(*), count(*) filter (where parent.{p} > child.{c}),"
                    " min(child.{c} - parent.{p}), max(child.{c} - parent.{p})"
                    " from {child} as child join {parent} as parent on parent.{key} = child.{key}"
                    " where child.{c} is not null and parent.{p} is not null group by 1 order by 1"
                ).format(**ids)
            )
            for value, rows, parent_later, low, high in cur.fetchall():
                if rows < MIN_EVIDENCE_ROWS:
                    continue
                # The parent's time against the child's, e.g. "users.created_at <= events.created_at".
                claim, broken, evidence = _oriented(
                    f"{parent.name}.{theirs}", f"{child.name}.{mine}", rows, parent_later, low, high
                )
                where = f" where {split} = '{value}'" if split else ""
                found.append(
                    Finding(
                        "time order",
                        f"{child.name} -> {parent.name} by {column}",
                        claim + where,
                        broken,
                        rows,
                        evidence,
                    )
                )
    return found


def _group_keys(shape: TableShape) -> list[tuple[str, ...]]:
    """Ids, and pairs of ids neither of which determines the other, that rows of the table share."""
    ids = shape.ids()
    pairs = [
        (a, b) for a, b in combinations(ids, 2) if (a, b) not in shape.determines and (b, a) not in shape.determines
    ]
    return [(name,) for name in ids] + pairs


def _category_time_order(cur, schema: str, shape: TableShape) -> list[Finding]:
    """For rows that share a key (a session, an order), per kind of row: does every row of kind Y have a row of
    kind X at or before it (every add_to_cart a page_view of the same session and product)? And how long do the
    rows of one key last?"""
    times = shape.of_kind("time")
    if not times:
        return []
    time = sql.Identifier(times[0])
    found = []
    for key in _group_keys(shape):
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        key_set = sql.SQL(" and ").join(sql.SQL("{} is not null").format(sql.Identifier(k)) for k in key)
        joined = sql.SQL(" and ").join(sql.SQL("firsts.{k} = later.{k}").format(k=sql.Identifier(k)) for k in key)
        label = ", ".join(key)
        for category in sorted(shape.kinds):
            cat = sql.Identifier(category)
            cur.execute(
                sql.SQL(
                    "with keyed as (select {keys}, {cat}, {time} from {t} where {key_set} and {cat} is not null),"
                    " firsts as (select {keys}, {cat}, min({time}) as first_at from keyed group by {keys}, {cat})"
                    " select earlier.value, later.{cat}, count(*),"
                    " count(*) filter (where firsts.first_at is null or firsts.first_at > later.{time})"
                    " from keyed as later cross join unnest(%s::text[]) as earlier (value)"
                    " left join firsts on {joined} and firsts.{cat} = earlier.value"
                    " where later.{cat} <> earlier.value group by 1, 2 order by 1, 2"
                ).format(
                    keys=keys, cat=cat, time=time, t=qualified(shape.name, schema), key_set=key_set, joined=joined
                ),
                (shape.categories[category],),
            )
            for earlier, later, rows, alone in cur.fetchall():
                if rows >= MIN_EVIDENCE_ROWS:
                    found.append(
                        Finding(
                            "time order",
                            f"{shape.name} by {label}",
                            f"every {later} has a row of {earlier} at or before it",
                            alone,
                            rows,
                        )
                    )
        if len(key) == 1:
            found += _spans(cur, schema, shape, key[0])
    return found


def _spans(cur, schema: str, shape: TableShape, key: str) -> list[Finding]:
    """The longest time from the first to the last row of one key; and without one kind of row, when that makes
    it much shorter (a session's visit lasts minutes, its shipment comes days later)."""
    time = sql.Identifier(shape.of_kind("time")[0])
    kinds = [(category, value) for category in sorted(shape.kinds) for value in shape.categories[category]]
    spans = [sql.SQL("max({time}) - min({time})").format(time=time)] + [
        sql.SQL("max({time}) filter (where {cat} <> {v}) - min({time}) filter (where {cat} <> {v})").format(
            time=time, cat=sql.Identifier(category), v=sql.Literal(value)
        )
        for category, value in kinds
    ]
    names = [sql.Identifier(f"span_{i}") for i in range(len(spans))]
    row = _select(
        cur,
        [sql.SQL("max({})").format(name) for name in names],
        sql.SQL("(select {spans} from {t} where {k} is not null group by {k}) as groups").format(
            spans=sql.SQL(", ").join(
                sql.SQL("{} as {}").format(span, name) for span, name in zip(spans, names, strict=True)
            ),
            t=qualified(shape.name, schema),
            k=sql.Identifier(key),
        ),
    )
    subject = f"{shape.name} by {key}"
    found = [Finding("time order", subject, "longest span", None, None, _gap(row[0]))]
    for (category, value), span in zip(kinds, row[1:], strict=True):
        if span and span * TELLING_SPAN <= row[0]:
            found.append(
                Finding("time order", subject, f"longest span without {category} {value}", None, None, _gap(span))
            )
    return found


# -- measured values as a reviewer reads them ---------------------------------------------------------------------


def _gap(value: timedelta | None) -> str:
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


def _value(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
