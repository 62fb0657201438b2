"""PyTorch eager, old (nn.MultiheadAttention) vs new (CrossAttention) sgjnd_r50 encoder, same weights, interleaved."""
import importlib, sys, time, numpy as np, torch
torch.set_num_threads(2)
x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8))
encoders = {}
for tag, root in (("old", "/tmp/oldtree"), ("new", "/work/main")):
    for name in [m for m in sys.modules if m == "sgjnd" or m.startswith("sgjnd.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    from sgjnd.model import load_checkpoint
    from sgjnd.model.pixels import PixelEncoder
    model = load_checkpoint("/tmp/att/r50.pt")
    encoders[tag] = PixelEncoder(model.encoder, model.spec).eval()
    sys.path.remove(root)
    print(tag, type(model.encoder.csa[0].mha).__name__)
times = {k: [] for k in encoders}
with torch.inference_mode():
    outs = {k: e(x) for k, e in encoders.items()}
    print("max |old - new|", float((outs["old"] - outs["new"]).abs().max()))
    for _ in range(6):
        for k, e in encoders.items():
            t = time.perf_counter(); e(x); times[k].append(time.perf_counter() - t)
for k, v in times.items():
    print(k, f"{1000 * np.median(v) / 16:.1f} ms/patch (min {1000 * min(v) / 16:.1f})")
