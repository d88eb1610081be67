"""How the engine cuts images into tiles and stacks into batches.

An image larger than a tile is fused in tiles that overlap by the
network's receptive radius; each tile's halo is discarded, so the tiled
result equals the untiled one and peak memory stays bounded by the tile.
The ONNX Runtime CPU path cuts every slice into tiles of at most
:data:`CPU_TILE`, for the cache and so that every thread has a tile; on a
GPU whole slices are stacked into one forward (:func:`slices_per_forward`).
"""

from __future__ import annotations

import numpy as np
import torch

#: Default tile edge in pixels (core, without halo): bounds peak memory. With
#: 512 a 4096 x 4096 pair fuses in under 1.5 GiB (``lightfusion-research bench``), and
#: the halo costs about 7 % extra work on large images.
DEFAULT_TILE = 512

#: Largest tile edge of the ONNX Runtime CPU path. A small tile keeps its
#: feature maps (32 channels) near the core that computes them, a large one
#: computes less halo (the network's receptive radius, 9 pixels a side: a
#: 128 tile reads 146 x 146). On the AVX-512 machine, 2 threads on a 512 x
#: 512 stack, tiles of 96 to 171 took 20-21 ms a slice, of 256 28 ms, of
#: 64 22.5 ms (``lightfusion-research bench --sizes 512 --tile-edges ...``,
#: docs/benchmarks.md); 128 is in the middle of the flat part, and cuts a
#: 256 x 256 slice into four tiles, two a thread. Tiles are cut evenly
#: (:func:`tile_grid`).
CPU_TILE = 128

#: Most pixels one PyTorch forward takes on a GPU (whole slices stacked into
#: a batch): one 512 x 512 slice per forward leaves an H200 launching kernels,
#: at 1.7 ms a slice whatever its size (``lightfusion-research bench --device cuda``).
#: A 100-slice 512 x 512 stack fused this way peaked at 1.2 GiB of GPU memory with the maps.
GPU_BATCH_PIXELS = 8 * 512 * 512

#: Smallest core edge the fast path cuts an image into so that every thread has a tile.
MIN_SPLIT = 64

#: Smallest tile edge :func:`run_slice` (and so ``fuse``) accepts: smaller
#: tiles would be mostly halo and run the network thousands of times.
MIN_TILE = 16


def check_tile(tile) -> int:
    """``tile`` as an int, or a one-line ValueError unless it is a whole number >= :data:`MIN_TILE`."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < MIN_TILE:
        raise ValueError(f"tile must be a whole number of at least {MIN_TILE} pixels, not {tile!r}")
    return int(tile)


def tile_grid(height: int, width: int, tile: int, tiles: int = 1) -> tuple[int, int]:
    """Core height and width that cut an image into even tiles of at most ``tile``.

    As few tiles as possible, all alike (512 with tiles of at most 192 gives
    three cores of 171, not 192, 192 and a thin 128 whose halo would cost as
    much as its core); then, while there are fewer than ``tiles`` (threads
    with nothing to do) and the cores stay at least :data:`MIN_SPLIT` pixels,
    the longer side is cut once more.
    """
    ny, nx = -(-height // tile), -(-width // tile)
    while ny * nx < tiles:
        if height / ny >= width / nx and height / (ny + 1) >= MIN_SPLIT:
            ny += 1
        elif width / (nx + 1) >= MIN_SPLIT:
            nx += 1
        else:
            break
    return -(-height // ny), -(-width // nx)


def tile_spans(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into cores of ``tile`` with ``halo`` context each side.

    Returns ``(read_start, read_stop, core_start, core_stop)`` per tile.
    """
    spans = []
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        spans.append((max(0, start - halo), min(length, stop + halo), start, stop))
    return spans


def slices_per_forward(device: torch.device, tile: int, height: int, width: int) -> int:
    """How many whole ``height`` x ``width`` slices one PyTorch forward takes:
    as many as fit in ``tile`` x ``tile`` pixels, on a GPU in :data:`GPU_BATCH_PIXELS`."""
    budget = tile * tile if torch.device(device).type == "cpu" else max(tile * tile, GPU_BATCH_PIXELS)
    return max(1, budget // (height * width))
