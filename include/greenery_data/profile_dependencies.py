"""Dependencies within a row of one raw table (``profiling.profile``): which category decides whether a column is
set, which column determines another, which text column restates another column's value, and which amount is the
sum or difference of two others.
"""

from __future__ import annotations

from itertools import combinations, permutations

from psycopg2 import sql

from include.greenery_data.profile_shape import MIN_EVIDENCE_ROWS, Finding, TableShape, select_row
from include.greenery_data.schema import qualified

MIN_RESTATED_LENGTH = 3  # shorter values are found inside any text by chance


def null_patterns(cur, schema: str, shape: TableShape) -> list[Finding]:
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


def determinations(cur, schema: str, shape: TableShape) -> list[Finding]:
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
    row = select_row(
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


def restatements(cur, schema: str, shape: TableShape) -> list[Finding]:
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
    row = select_row(cur, parts, qualified(shape.name, schema))
    return [
        Finding("dependencies", f"{shape.name}.{x}", f"contains {y}", row[2 * i + 1], row[2 * i])
        for i, (x, y) in enumerate(pairs)
        if row[2 * i] >= MIN_EVIDENCE_ROWS
    ]


def sums(cur, schema: str, shape: TableShape) -> list[Finding]:
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
    row = select_row(cur, parts, qualified(shape.name, schema))
    return [
        Finding("dependencies", f"{shape.name}.{a}", f"= {b} {op} {c}", row[2 * i + 1], row[2 * i])
        for i, (a, b, op, c) in enumerate(forms)
        if row[2 * i] >= MIN_EVIDENCE_ROWS
    ]
