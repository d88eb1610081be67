import sys, warnings, zlib
import numpy as np
from pathlib import Path
warnings.simplefilter("ignore")
from napari_lightfusion.fusion import fuse
from napari_lightfusion.pair_data import split_names, load_pairs
from napari_lightfusion.research.balance import hot_spot_means
root = Path("/work/shared/data/harvard")
ds, G = sys.argv[1], float(sys.argv[2])
folder, names = split_names(root, "validation", ds)
pairs = load_pairs(root, folder, ds, names[:30])
lo = np.log(1 / G)
A = [p.anatomical ** float(np.exp(np.random.default_rng(zlib.crc32(n.encode())).uniform(lo, -lo))) for p, n in zip(pairs, names)]
if len(sys.argv) > 4 and sys.argv[4] == "dark":  # only darkening: gamma in [1, G]
    A = [p.anatomical ** float(np.exp(np.random.default_rng(zlib.crc32(n.encode())).uniform(0, -lo))) for p, n in zip(pairs, names)]
from napari_lightfusion.baselines import fuse_baseline
avg = hot_spot_means((fuse_baseline("average", a, p.other), a, p.other) for a, p in zip(A, pairs))
w = sys.argv[3]
kw = dict(weights=Path(w)) if w.endswith(".pt") else dict(preset=w)
print(w, "aug validation G", G, "average %.3f / %.3f" % (avg["anatomy kept"], avg["function kept"]))
for b in (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7):
    m = hot_spot_means((fuse(a, p.other, device="cpu", balance=b, maps=False, **kw).fused, a, p.other) for a, p in zip(A, pairs))
    da, df = m["anatomy kept"] - avg["anatomy kept"], m["function kept"] - avg["function kept"]
    flag = "  <== both +0.01" if min(da, df) >= 0.01 else ("  (both ahead)" if min(da, df) > 0 else "")
    print("  b=%.2f (%+.3f, %+.3f)%s" % (b, da, df, flag))
