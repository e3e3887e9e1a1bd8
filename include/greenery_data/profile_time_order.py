"""Time order in the raw tables (``profiling.profile``): which timestamp comes first within a row, across a relation
(a row and the row its key names), and between the kinds of rows that share a key (which event comes before which
in a session); and how long the rows that share a key last.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from psycopg2 import sql

from include.greenery_data.profile_shape import MIN_EVIDENCE_ROWS, Finding, TableShape, gap, select_row
from include.greenery_data.schema import qualified

TELLING_SPAN = 10  # a group's span without a category is worth showing when this many times shorter


def _oriented(first: str, second: str, rows: int, first_later: int, low, high) -> tuple[str, int, str]:
    """The claim in the direction most rows follow, the rows that break it and the measured gaps: ``low`` and
    ``high`` are the smallest and largest ``second - first``."""
    if 2 * first_later > rows:
        return f"{second} <= {first}", rows - first_later, f"{first} - {second}: {gap(-high)} .. {gap(-low)}"
    return f"{first} <= {second}", first_later, f"{second} - {first}: {gap(low)} .. {gap(high)}"


def row_time_order(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Each pair of timestamps of one row: which comes first, and by how much."""
    found = []
    for a, b in combinations(shape.of_kind("time"), 2):
        rows, later, low, high = select_row(
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


def relation_time_order(
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


def category_time_order(cur, schema: str, shape: TableShape) -> list[Finding]:
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
    row = select_row(
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
    found = [Finding("time order", subject, "longest span", None, None, gap(row[0]))]
    for (category, value), span in zip(kinds, row[1:], strict=True):
        if span and span * TELLING_SPAN <= row[0]:
            found.append(
                Finding("time order", subject, f"longest span without {category} {value}", None, None, gap(span))
            )
    return found
