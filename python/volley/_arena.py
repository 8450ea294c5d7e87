"""The memory a worker shares with its pack process, so that large messages
do not travel through its socket (the other side is
``crates/pyworkers/src/arena.rs`` and ``held.rs``).

The pack process makes one memory file that the fork server and every
worker inherit. To send a large message a worker asks for slots, writes its
messages there and names the slots in its call: the middleware takes them
as they are. A large message it receives is a place in that file, mapped
here copy-on-write: a message from a worker of the same pack is read where
its sender wrote it, and changing the received array changes nothing for
anyone else. When the last view of a received message goes, the next call
tells the pack process, which then frees the place.
"""

import collections
import mmap
import sys

# Messages at least this large go through the arena (as in held.rs: smaller
# ones are cheaper copied through the socket than mapped).
LARGE = 64 << 10

# A reply with more large parts than this is copied out of the arena at once:
# before Python 3.13 each mapping holds a file descriptor of its own.
MOST_MAPPED = 64

_fd = None
_freed = collections.deque()
# Mappings need not hold a descriptor where Python allows it (3.13).
_UNTRACKED = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def attach(fd):
    """Uses the memory file ``fd`` (inherited from the pack process)."""
    global _fd
    _fd = fd


def attached():
    return _fd is not None


class _Mapped(mmap.mmap):
    """A received message's place, mapped here until its last view goes."""

    def __del__(self):
        slot = getattr(self, "slot", None)
        if slot is not None:
            _freed.append(slot)


def freed():
    """The places let go of since the last call (each said once)."""
    ids = []
    while True:
        try:
            ids.append(_freed.popleft())
        except IndexError:
            return ids


def forget(ids):
    """Slots this worker was given but will not name in a call."""
    _freed.extend(ids)


def view(slot, offset, length):
    """A writable, private view of a received message."""
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapped = _Mapped(_fd, offset - start + length, access=mmap.ACCESS_COPY, offset=start, **_UNTRACKED)
    mapped.slot = slot
    return memoryview(mapped)[offset - start :]


def copied(slot, offset, length):
    """A received message copied out (its place freed at once)."""
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(_fd, offset - start + length, access=mmap.ACCESS_READ, offset=start) as mapped:
        data = bytearray(mapped[offset - start : offset - start + length])
    _freed.append(slot)
    return data


def sizes(messages):
    return [sum(memoryview(p).nbytes for p in parts) for parts in messages]


def write(slots, messages):
    """Writes each message (a list of parts) into its slot ``(id, offset)``."""
    for (_, offset), parts in zip(slots, messages):
        size = sum(memoryview(p).nbytes for p in parts)
        # Mapped from a boundary the kernel takes (its pages may be larger than the arena's slots are aligned to).
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        # Shared and populated: the pages are made in one go, not faulted one by one.
        out = mmap.mmap(_fd, offset - start + size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, offset=start)
        try:
            at = offset - start
            for part in parts:
                data = memoryview(part).cast("B")
                out[at : at + data.nbytes] = data
                at += data.nbytes
        finally:
            out.close()
