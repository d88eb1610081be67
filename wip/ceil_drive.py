"""Throw-away: research train with a ceiling-distillation term (CEIL_NPZ: comma-separated npz files, CEIL_W weight)."""
import os, sys
import numpy as np, torch
import napari_lightfusion.research.train as rt
import napari_lightfusion.training as tr
import napari_lightfusion.objective as ob
targets = {}
for f in os.environ["CEIL_NPZ"].split(","):
    targets.update(dict(np.load(f)))
W = float(os.environ.get("CEIL_W", "32"))
_names = []
_pair_names = rt.pair_names
def pair_names(*a, **k):
    n = _pair_names(*a, **k); _names[:] = [x for x in n if not rt.is_validation(x)]; return n
rt.pair_names = pair_names
_with = rt.with_hot_spots
calls = [0]
def with_hot_spots(parts):
    out = _with(parts)
    calls[0] += 1
    if calls[0] == 1:
        assert len(out) == len(_names)
        out = [np.concatenate([p, targets[n][None]]) for p, n in zip(out, _names)]
        if os.environ.get("CEIL_AUG"):
            aug = {}
            for f in os.environ["CEIL_AUG"].split(","):
                aug.update(dict(np.load(f)))
            parts2 = [np.stack([aug[n + ":mri"], p[1]]).astype(np.float32) for p, n in zip(parts, _names)]
            out += [np.concatenate([p, aug[n][None]]) for p, n in zip(_with(parts2), _names)]
            print("training arrays", len(out), file=sys.stderr)
    return out
rt.with_hot_spots = with_hot_spots
stash = {}
_batch = tr.Crops.batch
def batch(self, size, device="cpu"):
    a, b, hot = _batch(self, size, device)
    # re-draw is not possible; recover the 4th plane by slicing: patch the stack instead
    return a, b, hot
# simpler: replicate Crops.batch with the 4th plane
def batch4(self, size, device="cpu"):
    c = self.crop; crops = []
    for i in self.rng.choice(len(self.images), size=size, p=self.p):
        image = self.images[i]
        y = self.rng.integers(image.shape[1] - c + 1); x = self.rng.integers(image.shape[2] - c + 1)
        patch = image[:, y:y + c, x:x + c]
        if self.rng.random() < 0.5: patch = patch[:, :, ::-1]
        if self.rng.random() < 0.5: patch = patch[:, ::-1, :]
        crops.append(patch)
    t = torch.from_numpy(np.ascontiguousarray(np.stack(crops), dtype=np.float32)).to(device)
    stash["ceil"] = t[:, 3:4] if t.shape[1] > 3 else None
    return t[:, :1], t[:, 1:2], (t[:, 2:3] if t.shape[1] > 2 else None)
tr.Crops.batch = batch4
_loss = ob.Objective.loss
def loss(self, fused, a, b, balance, hot=None):
    total, terms = _loss(self, fused, a, b, balance, hot)
    c = stash.pop("ceil", None)
    if c is not None and balance is not None and abs(balance - 0.5) <= self.middle_band:
        if os.environ.get("CEIL_MODE") == "ssim":
            from napari_lightfusion.losses import ssim7_map
            term = 1.0 - (ssim7_map(fused, c) * hot).sum() / hot.sum().clamp(min=1.0)
        else:
            term = ((fused - c).abs() * hot).sum() / hot.sum().clamp(min=1.0)
        terms["ceil"] = term
        total = total + self.weights.ssim * W * term
    return total, terms
ob.Objective.loss = loss
if os.environ.get("FREEZE_KEEP"):
    keep = tuple(os.environ["FREEZE_KEEP"].split(","))
    _start = rt.start_from
    def start_from(model, path):
        sha = _start(model, path)
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(keep))
        print("training", sum(p.numel() for p in model.parameters() if p.requires_grad), "parameters", file=sys.stderr)
        return sha
    rt.start_from = start_from
from napari_lightfusion.research.cli import main
sys.exit(main(sys.argv[1:]))
