"""Checking rows in a second process while this one writes: on two cores the file's parsing and the row policy
(Python) overlap with the database's work on the previous chunk (docs/performance.md, Import after issue 12).

The child is forked, so it inherits the open file and the policy as they are: it reads the rows itself and only
results cross the pipe. The pipe holds little, so the child is never more than a chunk or two ahead and memory
stays flat. The child never touches the database: the parent's connection is left alone (it is not closed on
the child's exit, which skips interpreter clean-up).
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = "done"
_ITEM = "item"
_ERROR = "error"


class ChildFailed(RuntimeError):
    """The child died without saying why (killed, out of memory)."""


def _child(items: Iterable[T], work: Callable[[list[T]], R], batch: int, pipe) -> None:
    try:
        iterator = iter(items)
        while chunk := list(islice(iterator, batch)):
            pipe.send((_ITEM, work(chunk)))
        pipe.send((_DONE, None))
    except BaseException as exc:  # noqa: B036 -- whatever stops the child is re-raised in the parent
        try:
            pipe.send((_ERROR, exc))
        except Exception:  # an exception that cannot be pickled: its text still can
            pipe.send((_ERROR, ChildFailed("".join(traceback.format_exception(exc)))))
    finally:
        pipe.close()


def map_in_child(items: Iterable[T], work: Callable[[list[T]], R], *, batch: int) -> Iterator[R]:
    """`work` over successive batches of `items`, run in a forked child; results come back in order. An exception
    in the child is raised here, as it was raised there."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(items, work, batch, send), daemon=True)
    process.start()
    send.close()
    try:
        while True:
            try:
                kind, payload = receive.recv()
            except EOFError:
                process.join(5)
                raise ChildFailed(f"the row checker stopped (exit code {process.exitcode})") from None
            if kind == _ITEM:
                yield payload
            elif kind == _ERROR:
                raise payload
            else:
                return
    finally:
        receive.close()
        if process.is_alive():
            process.terminate()
        process.join()
