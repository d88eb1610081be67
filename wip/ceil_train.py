"""Per-image hot-spot ceilings of the train pairs of a dataset (batched), saved as npz name->image."""
import sys, time
from pathlib import Path
import numpy as np, torch
from napari_lightfusion.losses import hot_spot_kept
from napari_lightfusion.metrics import hot_spot
from napari_lightfusion.pair_data import load_pairs, pair_names, planes
from napari_lightfusion.research.hot_spot_ceiling import SOFTNESS, SUM_WEIGHT
root = Path("/work/shared/data/harvard")
ds, part, nparts, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 300
torch.set_num_threads(1)
from napari_lightfusion.pair_data import is_validation
names = [n for n in pair_names(root, "train", ds) if not is_validation(n)][part::nparts]
pairs = planes(load_pairs(root, "train", ds, names))
import os, zlib
gammas = {}
if os.environ.get("GAMMA"):
    lo = np.log(1 / float(os.environ["GAMMA"]))
    for i, n in enumerate(names):
        g = float(np.exp(np.random.default_rng(zlib.crc32(n.encode())).uniform(lo, -lo)))
        gammas[n] = g
        pairs[i] = np.stack([pairs[i][0] ** g, pairs[i][1]]).astype(np.float32)
a = torch.tensor(np.stack([p[0] for p in pairs]))[:, None]
b = torch.tensor(np.stack([p[1] for p in pairs]))[:, None]
m = torch.tensor(np.stack([hot_spot(p[1] * 255.0, p[0] * 255.0) for p in pairs]).astype(np.float32))[:, None]
avg = 0.5 * (a + b)
with torch.no_grad():
    ra, rb = hot_spot_kept(avg, a, m), hot_spot_kept(avg, b, m)
z = torch.logit(avg.clamp(1e-3, 1 - 1e-3)).requires_grad_()
opt = torch.optim.Adam([z], lr=0.01)
t = time.time()
for s in range(steps):
    f = torch.sigmoid(z)
    la, lb = hot_spot_kept(f, a, m) - ra, hot_spot_kept(f, b, m) - rb
    smaller = -SOFTNESS * torch.logsumexp(torch.stack([la, lb]) / -SOFTNESS, dim=0)
    loss = -(smaller + SUM_WEIGHT * (la + lb)).sum()
    opt.zero_grad(); loss.backward(); opt.step()
    if s % 50 == 0:
        has = m.sum(dim=(1,2,3)) > 0
        print(s, "%.1fs" % (time.time() - t), "leads %.4f %.4f min %.4f" % (float(la[has].mean()), float(lb[has].mean()), float(torch.minimum(la, lb)[has].mean())), flush=True)
f = torch.sigmoid(z).detach()
# pairs without a hot spot keep the average
has = (m.sum(dim=(1, 2, 3)) > 0).view(-1, 1, 1, 1)
f = torch.where(has, f, avg)
extra = {n + ":mri": pairs[i][0] for i, n in enumerate(names)} if gammas else {}
np.savez_compressed(out, **{n: f[i, 0].numpy().astype(np.float32) for i, n in enumerate(names)}, **extra)
print("done", len(names), "%.1fs" % (time.time() - t))
