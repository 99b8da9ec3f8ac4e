"""The host buffer pools (fastrnn/backends/buffers.py): a block is reused only once no array
of it is alive, arrays alive at once never share memory, and free blocks are capped."""

import threading

import numpy as np
import pytest

from fastrnn.backends import buffers

LARGE = (300, 200)  # 240 KB of float32: from a pool


def test_a_block_is_reused_only_when_no_array_of_it_lives():
    a = buffers.empty(LARGE, np.float32)
    block = id(a.base)  # (an id: a reference would keep the block busy)
    assert a.base is not None and a.flags.c_contiguous and a.shape == LARGE
    b = buffers.empty(LARGE, np.float32)
    assert not np.shares_memory(a, b)
    view = a[10:20]
    del a
    c = buffers.empty(LARGE, np.float32)  # a view of a is alive: its block stays busy
    assert id(c.base) != block and not np.shares_memory(c, view)
    del view
    count = len(buffers._blocks())
    d = buffers.empty(LARGE, np.float32)
    assert len(buffers._blocks()) == count and not np.shares_memory(d, b) and \
        not np.shares_memory(d, c)  # a free block served it: no new memory


def test_arrays_alive_at_once_never_share_memory():
    rng = np.random.default_rng(0)
    arrays = []
    for i in range(40):
        shape = (int(rng.integers(200, 900)), int(rng.integers(50, 300)))
        dtype = (np.float32, np.float64)[i % 2]
        a = buffers.zeros(shape, dtype) if i % 3 else buffers.empty(shape, dtype)
        if i % 3:
            assert not a.any()
        a.fill(i)
        arrays.append(a)
        if i % 4 == 3:  # some die, and their blocks serve later arrays
            arrays.pop(int(rng.integers(len(arrays))))
    for a in arrays:
        assert (a == a.flat[0]).all()  # nobody else wrote into it
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)


def test_small_arrays_come_from_malloc_and_free_blocks_are_capped(monkeypatch):
    small = buffers.empty((4, 5), np.float64)
    assert small.base is None and small.shape == (4, 5)
    monkeypatch.setattr(buffers, "MAX_FREE_BYTES", 1 << 20)
    held = [buffers.empty((1 << 18,), np.float32) for _ in range(8)]  # 8 x 1 MB, busy
    del held
    buffers.empty((1 << 16,), np.float32)  # an allocation trims the free blocks
    blocks = buffers._blocks()
    free = [b for b, refs in zip(blocks, buffers._references(blocks), strict=True)
            if refs == buffers._FREE_REFS]
    assert sum(b.nbytes for b in free) <= 1 << 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_thread_has_its_own_pool(dtype):
    seen = {}

    def take(name):
        a = buffers.empty(LARGE, dtype)
        seen[name] = a.base
        del a

    take("main")
    t = threading.Thread(target=take, args=("other",))
    t.start()
    t.join()
    assert seen["main"] is not seen["other"]
