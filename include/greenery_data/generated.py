"""Generated data into the warehouse (COPY straight from the generator) or into course-format CSV files.

The session pass produces events, orders and order_items together. The load COPYs events as they come and
spools orders and order_items to temporary files (about a fifth of the bytes) that it COPYs next, so memory
stays flat at any scale and the generator runs once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from include.greenery_data.generator import (
    DEFAULT_DAYS,
    DEFAULT_SEED,
    TABLE_CHUNKS,
    ShopSpec,
    activity_chunks,
    header,
)
from include.greenery_data.loader import TableSource, replace_raw_tables
from include.greenery_data.progress import Progress
from include.greenery_data.schema import TABLES


class ChunkReader:
    """A read-only binary file over an iterator of CSV text chunks, for ``copy_expert``."""

    def __init__(self, chunks: Iterator[tuple[str, int]], progress: Progress | None = None):
        self.chunks = chunks
        self.progress = progress
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            try:
                text, rows = next(self.chunks)
            except StopIteration:
                break
            self.buffer += text.encode()
            if self.progress is not None:
                self.progress.update(rows)
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - copy_expert only calls read()
        return self.read(size)

    def close(self) -> None:
        self.buffer = b""


class ActivitySplitter:
    """Runs the session pass once: hands out events and spools orders and order_items to temporary files."""

    def __init__(self, spec: ShopSpec, progress: Progress | None):
        self.spec = spec
        self.progress = progress
        # Closed (and so deleted) by close(), after the load.
        self.spools: dict[str, IO[bytes]] = {
            table: tempfile.TemporaryFile(prefix=f"greenery-{table}-")  # noqa: SIM115
            for table in ("orders", "order_items")
        }

    def events(self) -> Iterator[tuple[str, int]]:
        for table, text, rows in activity_chunks(self.spec):
            if table == "events":
                yield text, rows
            else:
                self.spools[table].write(text.encode())
                if self.progress is not None:
                    self.progress.update(rows)

    def spooled(self, table: str) -> IO[bytes]:
        spool = self.spools[table]
        spool.seek(0)
        return spool

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()


def generated_sources(spec: ShopSpec, progress: Progress | None) -> tuple[list[TableSource], ActivitySplitter]:
    splitter = ActivitySplitter(spec, progress)
    sources = [
        TableSource(table, open=lambda make=make: ChunkReader(make(spec), progress), counted_by_source=True)
        for table, make in TABLE_CHUNKS.items()
    ]
    sources.append(TableSource("events", open=lambda: ChunkReader(splitter.events(), progress), counted_by_source=True))
    for table in ("orders", "order_items"):
        # Already counted while spooling; the spool file is closed (and deleted) by the COPY that reads it.
        sources.append(TableSource(table, open=lambda table=table: splitter.spooled(table), counted_by_source=True))
    return sources, splitter


def load_generated(
    conn,
    scale: float = 1,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: datetime | str | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Replace the raw tables with generated data; returns rows per table. See ``generator.py`` for the shape."""
    spec = ShopSpec.build(scale=scale, days=days, seed=seed, end=end)
    if progress is not None:
        progress.total = sum(spec.expected_rows().values())
    sources, splitter = generated_sources(spec, progress)
    try:
        return replace_raw_tables(conn, sources, progress)
    finally:
        splitter.close()


def export_csv(
    out_dir: str | Path,
    scale: float = 1,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: datetime | str | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write generated data as the seven course-format CSV files in ``out_dir``; returns rows per file."""
    spec = ShopSpec.build(scale=scale, days=days, seed=seed, end=end)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress.total = sum(spec.expected_rows().values())
    counts = dict.fromkeys(TABLES, 0)
    handles = {table: (out / f"{table}.csv").open("w", encoding="utf-8", newline="") for table in TABLES}
    try:
        for table, handle in handles.items():
            handle.write(header(table))
        for table, make in TABLE_CHUNKS.items():
            if progress is not None:
                progress.describe(table)
            for text, rows in make(spec):
                handles[table].write(text)
                counts[table] += rows
                if progress is not None:
                    progress.update(rows)
        if progress is not None:
            progress.describe("sessions")
        for table, text, rows in activity_chunks(spec):
            handles[table].write(text)
            counts[table] += rows
            if progress is not None:
                progress.update(rows)
    finally:
        for handle in handles.values():
            handle.close()
    if progress is not None:
        progress.close()
    return counts
