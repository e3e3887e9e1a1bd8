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

Each pass has its module: ``profile_shape`` (the first pass, and the form of a finding), ``profile_columns``
(columns and keys), ``profile_dependencies`` (within a row) and ``profile_time_order``.

Nothing here knows greenery's rules. Candidates come from the schema (``schema.COLUMNS``, ``PRIMARY_KEYS``), the
column types and names: a column named like another table's one-column key is a relation, a text column with a
few values (not an id) is a category. docs/data-contracts.md reviews the candidates into kept and rejected rules.
"""

from __future__ import annotations

from include.greenery_data.profile_columns import column_findings, key_findings
from include.greenery_data.profile_dependencies import determinations, null_patterns, restatements, sums
from include.greenery_data.profile_shape import SECTIONS, Finding, TableShape, table_shape
from include.greenery_data.profile_time_order import category_time_order, relation_time_order, row_time_order
from include.greenery_data.schema import TABLES, raw_schema

__all__ = ["SECTIONS", "Finding", "profile", "relations"]


def profile(conn, schema: str | None = None) -> list[Finding]:
    """Every finding about the raw tables in ``schema`` (default: the raw schema). Reads only; the transaction is
    rolled back."""
    schema = schema or raw_schema()
    found: list[Finding] = []
    try:
        with conn.cursor() as cur:
            shapes = {table: table_shape(cur, schema, table) for table in TABLES}
            for shape in shapes.values():
                found += column_findings(cur, schema, shape)
                # null_patterns before the passes that read ``shape.kinds``, determinations before the ones that
                # read ``shape.determines``: each marks the shape for the later ones.
                found += null_patterns(cur, schema, shape)
                found += key_findings(cur, schema, shape)
                found += determinations(cur, schema, shape)
                found += restatements(cur, schema, shape)
                found += sums(cur, schema, shape)
                found += row_time_order(cur, schema, shape)
                found += category_time_order(cur, schema, shape)
            for child, column, parent in relations(shapes):
                found += relation_time_order(cur, schema, shapes[child], column, shapes[parent], found)
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
