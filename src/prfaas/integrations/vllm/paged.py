"""Moving one request's positions between vLLM's paged caches and the transport's contiguous wire tensors (torch).

Attention layers: vLLM keeps K and V in blocks of `block_size` positions. Two layouts are known:

- ``cpu``:   one tensor ``[num_blocks, kv_heads, block_size, 2 * head_dim]``; within a block and head the
             first ``block_size`` rows of ``head_dim`` are keys and the next ``block_size`` rows values;
- ``split``: ``[2, num_blocks, block_size, kv_heads, head_dim]`` (FlashAttention and most CUDA backends).

On the wire a layer is always ``keys`` and ``values``, each ``[kv_heads, tokens, head_dim]`` in the cache dtype:
exactly the bytes S_kv counts for those positions (no block padding), and the same whatever the layout at
either end.

Linear-attention / SSM layers (GDN, Mamba, short conv): vLLM gives a raw byte page per state block; a layer's
state tensors lie at its start, back to back (conv state, then the recurrent state, ...), the rest is padding.
On the wire only those tensors' bytes go, as flat byte tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CPU_LAYOUT = "cpu"
SPLIT_LAYOUT = "split"


@dataclass(frozen=True, slots=True)
class AttentionGeometry:
    num_blocks: int
    block_size: int
    kv_heads: int
    head_dim: int
    layout: str  # CPU_LAYOUT | SPLIT_LAYOUT


def attention_geometry(cache: torch.Tensor, block_size: int, kv_heads: int, head_dim: int) -> AttentionGeometry:
    """Recognise the layout of one attention layer's paged cache from its shape; refuses an unknown one."""
    shape = tuple(cache.shape)
    if len(shape) == 4 and shape[1:] == (kv_heads, block_size, 2 * head_dim):
        return AttentionGeometry(shape[0], block_size, kv_heads, head_dim, CPU_LAYOUT)
    if len(shape) == 5 and shape[0] == 2 and shape[2:] == (block_size, kv_heads, head_dim):
        return AttentionGeometry(shape[1], block_size, kv_heads, head_dim, SPLIT_LAYOUT)
    raise ValueError(f"unknown paged KV layout {shape} for block_size {block_size}, {kv_heads} KV heads of "
                     f"{head_dim}: prfaas knows [blocks, heads, block, 2*dim] (CPU) and [2, blocks, block, heads, dim]")


def _key_value_blocks(cache: torch.Tensor, geo: AttentionGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``[num_blocks, kv_heads, block_size, head_dim]`` (CPU) or ``[num_blocks, block_size, kv_heads,
    head_dim]`` (split) of keys and values."""
    if geo.layout == CPU_LAYOUT:
        both = cache.view(geo.num_blocks, geo.kv_heads, 2 * geo.block_size, geo.head_dim)
        return both[:, :, :geo.block_size], both[:, :, geo.block_size:]
    return cache[0], cache[1]


def gather_positions(cache: torch.Tensor, geo: AttentionGeometry, block_ids: Sequence[int], start: int,
                     stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of positions ``[start, stop)`` as contiguous ``[kv_heads, stop - start, head_dim]`` copies
    (``block_ids[j]`` holds positions ``[j * block_size, (j + 1) * block_size)``)."""
    if not 0 <= start <= stop or stop > len(block_ids) * geo.block_size:
        raise ValueError(f"positions [{start}, {stop}) outside the {len(block_ids)} blocks of the request")
    first, last = start // geo.block_size, -(-stop // geo.block_size)
    index = torch.tensor(list(block_ids[first:last]), dtype=torch.long, device=cache.device)
    keys, values = _key_value_blocks(cache, geo)
    lo, hi = start - first * geo.block_size, stop - first * geo.block_size
    out = []
    for part in (keys, values):
        picked = part.index_select(0, index)  # a copy: the blocks may be freed once this returns
        if geo.layout == CPU_LAYOUT:  # [n, H, B, D] -> [H, n*B, D]
            flat = picked.permute(1, 0, 2, 3).reshape(geo.kv_heads, -1, geo.head_dim)
        else:  # [n, B, H, D] -> [H, n*B, D]
            flat = picked.reshape(-1, geo.kv_heads, geo.head_dim).permute(1, 0, 2)
        out.append(flat[:, lo:hi].contiguous())
    return out[0], out[1]


def scatter_positions(cache: torch.Tensor, geo: AttentionGeometry, block_ids: Sequence[int], start: int,
                      keys: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``[kv_heads, n, head_dim]`` keys and values into the blocks for positions ``[start, start + n)``;
    ``start`` must be block-aligned (vLLM's local hits and loads are)."""
    n = keys.shape[1]
    if start % geo.block_size:
        raise ValueError(f"load start {start} is not a multiple of the block size {geo.block_size}")
    if tuple(keys.shape) != (geo.kv_heads, n, geo.head_dim) or keys.shape != values.shape:
        raise ValueError(f"keys/values {tuple(keys.shape)}/{tuple(values.shape)} do not match "
                         f"[{geo.kv_heads}, n, {geo.head_dim}]")
    first = start // geo.block_size
    count = -(-n // geo.block_size)
    if first + count > len(block_ids):
        raise ValueError(f"{n} positions from {start} need {first + count} blocks, the request has {len(block_ids)}")
    index = torch.tensor(list(block_ids[first:first + count]), dtype=torch.long, device=cache.device)
    pad = count * geo.block_size - n
    dst_keys, dst_values = _key_value_blocks(cache, geo)
    for src, dst in ((keys, dst_keys), (values, dst_values)):
        src = src.to(device=cache.device, dtype=cache.dtype)
        if pad:
            src = torch.nn.functional.pad(src, (0, 0, 0, pad))
        blocks = src.reshape(geo.kv_heads, count, geo.block_size, geo.head_dim)
        if geo.layout == CPU_LAYOUT:
            dst.index_copy_(0, index, blocks.permute(1, 0, 2, 3).contiguous())
        else:
            dst.index_copy_(0, index, blocks.permute(1, 2, 0, 3).contiguous())


@dataclass(frozen=True, slots=True)
class StatePage:
    """The tensors a linear/SSM layer keeps in one state page: their byte sizes, in page order."""

    tensor_bytes: tuple[int, ...]
    page_bytes: int

    def __post_init__(self) -> None:
        if sum(self.tensor_bytes) > self.page_bytes:
            raise ValueError(f"state tensors of {sum(self.tensor_bytes)} bytes exceed the {self.page_bytes}-byte page")


def page_row(cache: torch.Tensor, page: StatePage, block_id: int) -> torch.Tensor:
    """State block `block_id` of a layer's raw cache as a flat uint8 *view* of its state bytes (never a copy: a
    write must land in vLLM's memory); refuses a page that is not contiguous. vLLM may pad pages to a common size
    outside the view it registers, so only the state tensors' bytes must fit."""
    row = cache[block_id]
    if not row.is_contiguous():
        raise ValueError(f"state page of shape {tuple(row.shape)} stride {tuple(row.stride())} is not contiguous")
    flat = row.view(torch.uint8) if row.dtype != torch.uint8 else row
    flat = flat.view(-1)
    needed = sum(page.tensor_bytes)
    if flat.numel() < needed:
        raise ValueError(f"state page holds {flat.numel()} bytes, the layer's state tensors need {needed}")
    return flat[:needed]


def read_state(cache: torch.Tensor, page: StatePage, block_id: int) -> list[torch.Tensor]:
    """Copies of the state tensors (flat bytes) of state block `block_id`."""
    row = page_row(cache, page, block_id)
    out, offset = [], 0
    for size in page.tensor_bytes:
        out.append(row[offset:offset + size].clone())
        offset += size
    return out


def write_state(cache: torch.Tensor, page: StatePage, block_id: int, tensors: Sequence[torch.Tensor]) -> None:
    row = page_row(cache, page, block_id)
    offset = 0
    for size, src in zip(page.tensor_bytes, tensors, strict=True):
        flat = src.reshape(-1).view(torch.uint8) if src.dtype != torch.uint8 else src.reshape(-1)
        if flat.numel() != size:
            raise ValueError(f"state tensor of {flat.numel()} bytes where the page holds {size}")
        row[offset:offset + size].copy_(flat.to(cache.device))
        offset += size
