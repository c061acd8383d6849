"""An import file's rows, parsed a batch at a time: in this process, or in a process of its own ahead of
the one deciding and writing them.

Parsing (the CSV module, email-validator and above all phonenumbers) was half of an import's Python time;
in a process of its own it runs on the other core while this one applies the rules and PostgreSQL writes
(docs/performance.md, "Import and export"). Only this module's code runs there: it reads the file and
returns values, never touching the database, the app or its secrets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import operator
import time
from collections.abc import Iterator
from datetime import date
from multiprocessing.connection import Connection
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

from app.contacts import csvio
from app.contacts.rules import Collected

log = logging.getLogger("popsync.imports")

ParsedRow = tuple[int, Collected | csvio.RowError]
# A parsed row as it crosses the pipe: a Collected as the tuple of its fields' values, in this order.
_PackedRow = tuple[int, tuple[Any, ...] | csvio.RowError]
_FIELD_VALUES = operator.attrgetter(*(field.name for field in dataclasses.fields(Collected)))


class _ParserCpu:
    """CPU seconds spent by this process's finished parsing processes (for bench/import.py: a forked
    server's child is not this process's child, so ``RUSAGE_CHILDREN`` does not see it)."""

    seconds = 0.0


parser_cpu = _ParserCpu()
# A fork server started once, with this module imported, forks each parsing process: forking this process
# instead would copy its database connections and threads into the child.
_PRELOAD = ["app.contacts.import_rows"]


def parsed_batches(
    path: str, skip: int, size: int, region: str | None, today: date
) -> Iterator[list[ParsedRow]]:
    """The file's data rows after the first ``skip``, parsed, in batches of ``size``.

    ``FileRefused`` when the file can no longer be read (it changed since pass 1)."""
    with csvio.open_text(path) as stream:
        layout = csvio.read_layout(stream)
        batch: list[ParsedRow] = []
        for index, (row, cells) in enumerate(csvio.records(stream, layout)):
            if index < skip:
                continue
            batch.append((row, csvio.parse_row(cells, layout, region, today)))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


@contextlib.contextmanager
def parsed_ahead(
    path: str, skip: int, size: int, region: str | None, today: date
) -> Iterator[Iterator[list[ParsedRow]]]:
    """``parsed_batches`` computed by a process of its own, a few batches ahead of the caller.

    The process ends with the context, whether the caller read everything or stopped early."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    receiver, sender = context.Pipe(duplex=False)
    _widen(sender)
    process = context.Process(
        target=_parse_into,
        args=(sender, path, skip, size, region, today),
        name="popsync-import-parser",
        daemon=True,
    )
    process.start()
    sender.close()

    def batches() -> Iterator[list[ParsedRow]]:
        while True:
            try:
                kind, value = receiver.recv()
            except EOFError:
                process.join(timeout=5)
                message = f"the import's parsing process ended early (exit code {process.exitcode})"
                raise RuntimeError(message) from None
            if kind == "batch":
                yield _unpacked(value)
            elif kind == "refused":
                raise csvio.FileRefused(value)
            elif kind == "failed":
                raise RuntimeError(f"the import's parsing process failed: {value}")
            else:
                parser_cpu.seconds += value
                return

    try:
        yield batches()
    finally:
        receiver.close()
        process.terminate()  # a caller that stopped early leaves it waiting to send
        process.join(timeout=10)


# A parsed batch of 1,000 rows pickles to ~130 KB: through Linux's default 64 KB pipe each one went in two
# halves, the parsing process waiting for this one to be scheduled between them on a busy machine. With a
# wider pipe a batch goes in one write, and the process parses up to several batches ahead (memory stays
# bounded by the pipe).
_PIPE_BYTES = 1 << 20


def _widen(end: Connection) -> None:
    """Ask for a ``_PIPE_BYTES`` pipe (Linux); elsewhere, or past the system's limit, keep what there is."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if set_size is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(end.fileno(), set_size, _PIPE_BYTES)


def _parse_into(
    sender: Connection,
    path: str,
    skip: int,
    size: int,
    region: str | None,
    today: date,
) -> None:
    """The parsing process: each batch, then ``done`` (or why not). A send waits while the pipe is full,
    so the process runs a few batches ahead at most and its memory stays at a batch or two."""
    try:
        for batch in parsed_batches(path, skip, size, region, today):
            sender.send(("batch", _packed(batch)))
        sender.send(("done", time.process_time()))
    except csvio.FileRefused as error:
        sender.send(("refused", error.message))
    except Exception as error:  # reported to the reader, which raises it there
        log.exception("import parsing failed")
        sender.send(("failed", type(error).__name__))
    finally:
        sender.close()


# Unpickling a thousand frozen dataclasses cost the deciding process 6.4 µs a row, a tenth of its time in
# an import; the same values as plain tuples unpickle and become Collected again in 2 µs.
def _packed(batch: list[ParsedRow]) -> list[_PackedRow]:
    return [
        (row, _FIELD_VALUES(parsed) if isinstance(parsed, Collected) else parsed) for row, parsed in batch
    ]


def _unpacked(batch: list[_PackedRow]) -> list[ParsedRow]:
    return [(row, Collected(*parsed) if type(parsed) is tuple else parsed) for row, parsed in batch]
