"""Running the network on one 2D pair: device choice, tiling, and the maps.

The engine takes the two grey streams of one slice and returns the fused
luminance with the per-stream surprise and attention maps, reduced over
channels (mean, or one chosen channel) so that a map costs two images per
stream, not ``2 C``.

Images larger than ``tile`` x ``tile`` are cut into tiles that overlap by
the network's receptive radius; each tile's halo is discarded, so the tiled
result equals the untiled one and peak memory stays bounded by the tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import LightFusionNet

#: Default tile edge in pixels (core, without halo): bounds peak memory.
DEFAULT_TILE = 1024


def available_devices() -> list[str]:
    """Devices torch can run on here, in order of preference, always ending in "cpu"."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA, then MPS, then CPU; an explicit device must exist here."""
    if str(device) == "auto":
        return torch.device(available_devices()[0])
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None
    here = available_devices()
    if resolved.type not in here or (
        resolved.type == "cuda" and resolved.index is not None
        and resolved.index >= torch.cuda.device_count()
    ):
        raise ValueError(f"device {str(device)!r} is not available here; available: {', '.join(here)}")
    return resolved


@dataclass
class SliceOutput:
    """The network's answer for one slice, as float32 numpy arrays."""

    fused: np.ndarray  # (H, W) in [0, 1]
    surprise: np.ndarray | None  # (2, H, W): stream 1, stream 2
    attention: np.ndarray  # (2, H, W)


def _reduce(maps, channel: int | None) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): mean over channels, or one channel."""
    return maps.mean(dim=1) if channel is None else maps[:, channel]


@torch.inference_mode()
def _run_tile(model, anatomical, functional, device, channel):
    a = torch.from_numpy(anatomical)[None, None].to(device)
    b = torch.from_numpy(functional)[None, None].to(device)
    fused, maps = model(a, b, return_maps=True)
    surprise = maps["surprise"]
    out_s = None if surprise[0] is None else torch.stack([_reduce(s, channel)[0] for s in surprise])
    out_a = torch.stack([_reduce(m, channel)[0] for m in maps["attention"]])
    as_np = lambda t: None if t is None else t.float().cpu().numpy()  # noqa: E731
    return as_np(fused[0, 0]), as_np(out_s), as_np(out_a)


def tile_spans(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into cores of ``tile`` with ``halo`` context each side.

    Returns ``(read_start, read_stop, core_start, core_stop)`` per tile.
    """
    spans = []
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        spans.append((max(0, start - halo), min(length, stop + halo), start, stop))
    return spans


def run_slice(
    model: LightFusionNet,
    anatomical: np.ndarray,
    functional: np.ndarray,
    device: torch.device,
    channel: int | None = None,
    tile: int = DEFAULT_TILE,
) -> SliceOutput:
    """Fuse one grey pair ``(H, W)`` on ``device``, tiled when larger than ``tile``."""
    model = model.to(device)
    h, w = anatomical.shape
    if (h <= tile and w <= tile) or not model.is_local:
        return SliceOutput(*_run_tile(model, anatomical, functional, device, channel))
    halo = model.receptive_radius
    fused = np.empty((h, w), np.float32)
    attention = np.empty((2, h, w), np.float32)
    surprise = np.empty((2, h, w), np.float32) if model.config.attention == "pca" else None
    for y0, y1, cy0, cy1 in tile_spans(h, tile, halo):
        for x0, x1, cx0, cx1 in tile_spans(w, tile, halo):
            f, s, a = _run_tile(
                model, anatomical[y0:y1, x0:x1], functional[y0:y1, x0:x1], device, channel
            )
            inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
            fused[cy0:cy1, cx0:cx1] = f[inner]
            attention[:, cy0:cy1, cx0:cx1] = a[(slice(None), *inner)]
            if surprise is not None:
                surprise[:, cy0:cy1, cx0:cx1] = s[(slice(None), *inner)]
    return SliceOutput(fused, surprise, attention)
