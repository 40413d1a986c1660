"""Gather/scatter between vLLM-style paged caches and prfaas wire tensors (no vLLM needed: torch only)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from prfaas.integrations.vllm.paged import (  # noqa: E402
    CPU_LAYOUT,
    SPLIT_LAYOUT,
    StatePage,
    attention_geometry,
    gather_positions,
    read_state,
    scatter_positions,
    write_state,
)

BLOCK, HEADS, DIM, NUM_BLOCKS = 16, 2, 8, 12


def _cache(layout: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if layout == CPU_LAYOUT:
        return torch.randn(NUM_BLOCKS, HEADS, BLOCK, 2 * DIM, generator=g)
    return torch.randn(2, NUM_BLOCKS, BLOCK, HEADS, DIM, generator=g)


def _key_at(cache: torch.Tensor, layout: str, block: int, head: int, slot: int) -> torch.Tensor:
    if layout == CPU_LAYOUT:
        return cache.view(NUM_BLOCKS, HEADS, 2 * BLOCK, DIM)[block, head, slot]
    return cache[0, block, slot, head]


def _value_at(cache: torch.Tensor, layout: str, block: int, head: int, slot: int) -> torch.Tensor:
    if layout == CPU_LAYOUT:
        return cache.view(NUM_BLOCKS, HEADS, 2 * BLOCK, DIM)[block, head, BLOCK + slot]
    return cache[1, block, slot, head]


@pytest.mark.parametrize("layout", [CPU_LAYOUT, SPLIT_LAYOUT])
def test_gather_reads_each_position_from_its_block(layout: str) -> None:
    cache = _cache(layout)
    geo = attention_geometry(cache, BLOCK, HEADS, DIM)
    assert geo.layout == layout and geo.num_blocks == NUM_BLOCKS
    blocks = [7, 2, 9, 4]  # non-contiguous, out of order
    keys, values = gather_positions(cache, geo, blocks, 16, 53)
    assert keys.shape == (HEADS, 37, DIM) and keys.is_contiguous()
    for pos in (16, 31, 32, 47, 52):
        j, slot = divmod(pos, BLOCK)
        for head in range(HEADS):
            assert torch.equal(keys[head, pos - 16], _key_at(cache, layout, blocks[j], head, slot))
            assert torch.equal(values[head, pos - 16], _value_at(cache, layout, blocks[j], head, slot))


@pytest.mark.parametrize("layout", [CPU_LAYOUT, SPLIT_LAYOUT])
def test_scatter_into_other_blocks_round_trips_and_touches_nothing_else(layout: str) -> None:
    src = _cache(layout)
    geo = attention_geometry(src, BLOCK, HEADS, DIM)
    keys, values = gather_positions(src, geo, [3, 5, 1, 8], 0, 50)
    dst = torch.zeros_like(src)
    dst_blocks = [10, 0, 6, 11]
    scatter_positions(dst, geo, dst_blocks, 0, keys, values)
    back_k, back_v = gather_positions(dst, geo, dst_blocks, 0, 50)
    assert torch.equal(back_k, keys) and torch.equal(back_v, values)
    untouched = [b for b in range(NUM_BLOCKS) if b not in dst_blocks]
    if layout == CPU_LAYOUT:
        assert not dst[untouched].any()
    else:
        assert not dst[:, untouched].any()


def test_scatter_from_a_block_aligned_start_keeps_the_prefix() -> None:
    src = _cache(CPU_LAYOUT)
    geo = attention_geometry(src, BLOCK, HEADS, DIM)
    dst = _cache(CPU_LAYOUT) * 0 + 5.0
    keys, values = gather_positions(src, geo, [1, 2, 3], 16, 40)
    scatter_positions(dst, geo, [4, 5, 6], 16, keys, values)
    assert torch.all(dst[4] == 5.0)  # the held prefix block is not written
    got_k, _ = gather_positions(dst, geo, [4, 5, 6], 16, 40)
    assert torch.equal(got_k, keys)
    with pytest.raises(ValueError, match="not a multiple"):
        scatter_positions(dst, geo, [4, 5, 6], 8, keys, values)


def test_unknown_layout_and_out_of_range_positions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown paged KV layout"):
        attention_geometry(torch.zeros(4, 3, 16, 16), BLOCK, HEADS, DIM)
    cache = _cache(CPU_LAYOUT)
    geo = attention_geometry(cache, BLOCK, HEADS, DIM)
    with pytest.raises(ValueError, match="outside"):
        gather_positions(cache, geo, [0, 1], 0, 33)


def test_state_page_round_trip_moves_only_the_state_bytes() -> None:
    page = StatePage((24, 40), 128)
    src = torch.randint(0, 255, (6, 1, 1, 128), dtype=torch.uint8)
    parts = read_state(src, page, 4)
    assert [p.numel() for p in parts] == [24, 40]
    assert torch.equal(torch.cat(parts), src[4].reshape(-1)[:64])
    dst = torch.zeros(6, 1, 1, 128, dtype=torch.uint8)
    write_state(dst, page, 2, parts)
    assert torch.equal(dst[2].reshape(-1)[:64], src[4].reshape(-1)[:64])
    assert not dst[2].reshape(-1)[64:].any() and not dst[[0, 1, 3, 4, 5]].any()
    with pytest.raises(ValueError, match="exceed"):
        StatePage((100, 40), 128)
    with pytest.raises(ValueError, match="page holds"):
        write_state(dst, page, 2, [parts[1], parts[0]])


def test_permuted_block_layouts_are_read_and_written_position_by_position() -> None:
    """vLLM's CPU kernels keep keys dimension-major (and AMX ones in tiles): the connector hands the layout over as
    a permutation probed from the kernel; gather/scatter must honour it for keys and values separately."""
    block, heads, dim = 64, 2, 8
    g = torch.Generator().manual_seed(3)
    key_index = torch.tensor([d * block + t for t in range(block) for d in range(dim)])
    value_index = torch.randperm(block * dim, generator=g)
    cache = torch.zeros(4, heads, block, 2 * dim)
    geo = attention_geometry(cache, block, heads, dim, key_index, value_index)
    region = cache.view(4, heads, 2, block * dim)
    for h in range(heads):
        for t in range(block):
            for d in range(dim):
                region[2, h, 0, key_index[t * dim + d]] = 1000 * h + 10 * t + d
                region[2, h, 1, value_index[t * dim + d]] = -(1000 * h + 10 * t + d)
    keys, values = gather_positions(cache, geo, [2], 3, 40)
    expected = torch.tensor([[[1000 * h + 10 * t + d for d in range(dim)] for t in range(3, 40)] for h in range(heads)],
                            dtype=cache.dtype)
    assert torch.equal(keys, expected) and torch.equal(values, -expected)
    full_k, full_v = gather_positions(cache, geo, [2], 0, block)
    other = torch.zeros_like(cache)
    scatter_positions(other, geo, [0], 0, full_k, full_v)
    assert torch.equal(other[0], cache[2])  # the same bytes where the kernel expects them
    with pytest.raises(ValueError, match="permutation"):
        attention_geometry(cache, block, heads, dim, key_index[:-1])
