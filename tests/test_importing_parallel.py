"""Rows checked in a forked child come back complete, in order, with the child's errors raised here."""

import os

import pytest

from campaigns.importing.parallel import ChildFailed, map_in_child


def _pids_and_squares(batch):
    return os.getpid(), [n * n for n in batch]


def test_batches_come_back_in_order_from_another_process():
    results = list(map_in_child(range(10_001), _pids_and_squares, batch=1000))
    assert [len(squares) for _pid, squares in results] == [1000] * 10 + [1]
    assert [n for _pid, squares in results for n in squares] == [n * n for n in range(10_001)]
    assert {pid for pid, _squares in results} != {os.getpid()}


def test_the_child_reads_a_file_opened_here(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"{i}\n" for i in range(5000)))
    with path.open() as f:
        lines = (int(line) for line in f)
        assert sum(sum(batch) for batch in map_in_child(lines, lambda batch: batch, batch=700)) == sum(range(5000))


class _Odd(ValueError):
    pass


def _fails_at_seven(batch):
    for n in batch:
        if n == 7:
            raise _Odd("line 7 is odd")
    return batch


def test_an_error_in_the_child_is_raised_here_after_the_batches_before_it():
    got = []
    with pytest.raises(_Odd, match="line 7 is odd"):
        for batch in map_in_child(range(20), _fails_at_seven, batch=5):
            got.extend(batch)
    assert got == [0, 1, 2, 3, 4]


def test_a_child_that_dies_is_an_error_not_a_short_result():
    def die(batch):
        os._exit(3)

    with pytest.raises(ChildFailed, match="exit code 3"):
        list(map_in_child(range(10), die, batch=5))


def test_stopping_early_ends_the_child():
    results = map_in_child(iter(lambda: 1, 0), lambda batch: len(batch), batch=100)  # endless
    assert next(results) == 100
    results.close()
