"""Per column and per key of one raw table (``profiling.profile``): what its values are and what identifies a row.

``column_findings`` measures each column's nulls, distinct values and range (of lengths for text, the values of a
category); ``key_findings`` lists the text columns with no repeated value, the pairs of ids and categories that
identify a row, and the columns unique within one kind of row (one ``event_type``).
"""

from __future__ import annotations

from itertools import combinations

from psycopg2 import sql

from include.greenery_data.profile_shape import MIN_EVIDENCE_ROWS, Finding, TableShape, select_row, shown_value
from include.greenery_data.schema import qualified


def column_findings(cur, schema: str, shape: TableShape) -> list[Finding]:
    """Rows; per column its nulls, distinct values and range (of lengths for text; the values of a category)."""
    parts = []
    for column in shape.columns:
        ident = sql.Identifier(column.name)
        value = sql.SQL("length({})").format(ident) if column.kind == "text" else ident
        parts += [sql.SQL("min({})").format(value), sql.SQL("max({})").format(value)]
    row = select_row(cur, parts, qualified(shape.name, schema))
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
            spread = f"{shown_value(low)} .. {shown_value(high)}"
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


def key_findings(cur, schema: str, shape: TableShape) -> list[Finding]:
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
        row = select_row(
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
