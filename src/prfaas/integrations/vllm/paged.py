"""Moving one request's positions between vLLM's paged caches and the transport's contiguous wire tensors (torch).

Attention layers: vLLM keeps K and V in blocks of `block_size` positions. Two layouts are known:

- ``cpu``:   one tensor ``[num_blocks, kv_heads, block_size, 2 * head_dim]``; within a block and head the
             first ``block_size`` rows of ``head_dim`` are keys and the next ``block_size`` rows values;
- ``split``: ``[2, num_blocks, block_size, kv_heads, head_dim]`` (FlashAttention and most CUDA backends).

Within a block and head, vLLM's CPU kernels do not keep keys (and, with AMX, values) position-major: the "vec"
kernels store keys dimension-major ``[head_dim][block_size]``, the AMX ones in tiles of 16 positions (bf16 with
dimension pairs interleaved). The connector probes the kernel's own cache-write op once per layer shape and hands
the result here as a permutation: `key_index[t * head_dim + d]` is the offset of position t, dimension d within the
head's key region (likewise `value_index`); None means position-major.

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


@dataclass(frozen=True, slots=True, eq=False)
class AttentionGeometry:
    num_blocks: int
    block_size: int
    kv_heads: int
    head_dim: int
    layout: str  # CPU_LAYOUT | SPLIT_LAYOUT
    key_index: torch.Tensor | None = None  # CPU_LAYOUT: memory offset of canonical (t, d) in a head's key region
    value_index: torch.Tensor | None = None


def attention_geometry(cache: torch.Tensor, block_size: int, kv_heads: int, head_dim: int,
                       key_index: torch.Tensor | None = None,
                       value_index: torch.Tensor | None = None) -> AttentionGeometry:
    """Recognise the layout of one attention layer's paged cache from its shape; refuses an unknown one."""
    shape = tuple(cache.shape)
    if len(shape) == 4 and shape[1:] == (kv_heads, block_size, 2 * head_dim):
        for index in (key_index, value_index):
            if index is not None and tuple(index.shape) != (block_size * head_dim,):
                raise ValueError(f"a position permutation must have {block_size * head_dim} entries")
        return AttentionGeometry(shape[0], block_size, kv_heads, head_dim, CPU_LAYOUT,
                                 None if key_index is None else key_index.to(cache.device),
                                 None if value_index is None else value_index.to(cache.device))
    if len(shape) == 5 and shape[0] == 2 and shape[2:] == (block_size, kv_heads, head_dim):
        return AttentionGeometry(shape[1], block_size, kv_heads, head_dim, SPLIT_LAYOUT)
    raise ValueError(f"unknown paged KV layout {shape} for block_size {block_size}, {kv_heads} KV heads of "
                     f"{head_dim}: prfaas knows [blocks, heads, block, 2*dim] (CPU) and [2, blocks, block, heads, dim]")


def _regions(cache: torch.Tensor, geo: AttentionGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block and head, the key and value regions as flat ``[num_blocks, H, B * D]`` views (CPU layout)."""
    region = geo.block_size * geo.head_dim
    both = torch.as_strided(cache, (geo.num_blocks, geo.kv_heads, 2, region), (cache.stride(0), cache.stride(1),
                                                                            region, 1))
    return both[:, :, 0], both[:, :, 1]


def gather_positions(cache: torch.Tensor, geo: AttentionGeometry, block_ids: Sequence[int], start: int,
                     stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of positions ``[start, stop)`` as contiguous ``[kv_heads, stop - start, head_dim]`` copies
    (``block_ids[j]`` holds positions ``[j * block_size, (j + 1) * block_size)``)."""
    if not 0 <= start <= stop or stop > len(block_ids) * geo.block_size:
        raise ValueError(f"positions [{start}, {stop}) outside the {len(block_ids)} blocks of the request")
    first, last = start // geo.block_size, -(-stop // geo.block_size)
    index = torch.tensor(list(block_ids[first:last]), dtype=torch.long, device=cache.device)
    lo, hi = start - first * geo.block_size, stop - first * geo.block_size
    out = []
    if geo.layout == CPU_LAYOUT:
        for region, perm in zip(_regions(cache, geo), (geo.key_index, geo.value_index), strict=True):
            picked = region.index_select(0, index)  # a copy: the blocks may be freed once this returns
            if perm is not None:
                picked = picked[:, :, perm]  # canonical order t * D + d
            flat = picked.view(-1, geo.kv_heads, geo.block_size, geo.head_dim).permute(1, 0, 2, 3)
            out.append(flat.reshape(geo.kv_heads, -1, geo.head_dim)[:, lo:hi].contiguous())
        return out[0], out[1]
    for part in (cache[0], cache[1]):  # split: [n, B, H, D] -> [H, n*B, D]
        picked = part.index_select(0, index)
        flat = picked.reshape(-1, geo.kv_heads, geo.head_dim).permute(1, 0, 2)
        out.append(flat[:, lo:hi].contiguous())
    return out[0], out[1]


def scatter_positions(cache: torch.Tensor, geo: AttentionGeometry, block_ids: Sequence[int], start: int,
                      keys: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``[kv_heads, n, head_dim]`` keys and values into the blocks for positions ``[start, start + n)``;
    ``start`` must be block-aligned (vLLM's local hits and loads are). The last block's slots past the positions
    are written with zeros (vLLM writes each new position before it reads it)."""
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
    if geo.layout == CPU_LAYOUT:
        targets = zip(_regions(cache, geo), (geo.key_index, geo.value_index), (keys, values), strict=True)
        for region, perm, src in targets:
            src = src.to(device=cache.device, dtype=cache.dtype)
            if pad:
                src = torch.nn.functional.pad(src, (0, 0, 0, pad))
            canon = src.reshape(geo.kv_heads, count, geo.block_size * geo.head_dim).permute(1, 0, 2)
            if perm is None:
                memory = canon.contiguous()
            else:
                memory = torch.empty(count, geo.kv_heads, geo.block_size * geo.head_dim, dtype=cache.dtype,
                                     device=cache.device)
                memory[:, :, perm] = canon
            region.index_copy_(0, index, memory)
        return
    for part, src in ((cache[0], keys), (cache[1], values)):
        src = src.to(device=cache.device, dtype=cache.dtype)
        if pad:
            src = torch.nn.functional.pad(src, (0, 0, 0, pad))
        blocks = src.reshape(geo.kv_heads, count, geo.block_size, geo.head_dim)
        part.index_copy_(0, index, blocks.permute(1, 2, 0, 3).contiguous())


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
