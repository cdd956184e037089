"""The Parquet encoder of ExportEvents (export.py): herald's `parquet` extra (pyarrow), imported only where an
export asks for Parquet, so an image without it still exports CSV."""

import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# Parquet's types by column; the rest are text (state is exported by name).
PARQUET_TYPES = {"occur_time": pa.timestamp("us", tz="UTC"), "attempt": pa.int32()}


class ParquetEncoder:
    """One row group per slice; the footer comes with finish()."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = names
        self._schema = pa.schema([(name, PARQUET_TYPES.get(name, pa.string())) for name in names])
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(self._sink, self._schema)

    def add(self, rows: list[tuple[Any, ...]]) -> bytes:
        table = pa.Table.from_pylist([dict(zip(self._names, r, strict=True)) for r in rows], schema=self._schema)
        self._writer.write_table(table)
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


class _Sink(io.RawIOBase):
    """Where Parquet writes: hands over what was written since the last take, so nothing accumulates."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pending += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data
