"""The worker's side of the pack's shared memory, on a memory file of its own."""

import mmap
import os

import numpy as np
import pytest

from volley import _arena, _wire


@pytest.fixture
def arena():
    fd = os.memfd_create("volley-test-arena")
    os.ftruncate(fd, 1 << 22)
    previous = _arena._fd
    _arena.attach(fd)
    _arena.freed()
    yield fd
    _arena.attach(previous)
    os.close(fd)


def test_messages_written_are_read_back_mapped_or_copied_and_each_place_is_freed_once(arena):
    page = mmap.ALLOCATIONGRANULARITY
    array = np.arange(40_000, dtype=np.int64)
    message = _wire.encode(array)
    size = _arena.sizes([message])[0]
    # A slot that does not start on the kernel's boundary is written all the same.
    offset = 3 * page + 4096 if page > 4096 else 3 * page
    _arena.write([(7, offset)], [message])
    viewed = _wire.decode(_arena.view(7, offset, size))
    assert (viewed == array).all()
    viewed[0] = -1  # copy-on-write: the arena keeps what was sent
    copied = _wire.decode(_arena.copied(8, offset, size))
    assert (copied == array).all()
    assert _arena.freed() == [8], "a copied place is freed at once"
    del viewed
    assert _arena.freed() == [7], "a mapped place is freed when its last view goes"
    assert _arena.freed() == []
