"""Interleaved timing, batch 16, 2 threads: ORT and OpenVINO on the old/new r50 encoder graphs (FP32, INT8)."""
import time, numpy as np, torch, subprocess
import onnxruntime as ort, openvino as ov
x = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
core = ov.Core()
runs = {}
for n in ['old', 'new']:
    for g in ['encoder.onnx', 'encoder.int8-ort.onnx', 'encoder.int8.onnx']:
        path = f'/tmp/att/{n}/{g}'
        if g != 'encoder.int8.onnx':
            so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
            s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
            runs[f'ort {n} {g}'] = (lambda s=s: s.run(None, {'patches': x})[0])
        m = core.read_model(path)
        m.reshape({m.inputs[0].get_any_name(): [16, 224, 224, 3]})
        c = core.compile_model(m, 'CPU', {'INFERENCE_NUM_THREADS': 2, 'INFERENCE_PRECISION_HINT': 'f32',
                                          'PERFORMANCE_HINT': 'LATENCY'})
        r = c.create_infer_request()
        runs[f'ov {n} {g}'] = (lambda r=r: r.infer({0: x})[0].copy())
from sgjnd.model import load_checkpoint
torch.set_num_threads(2)
model = load_checkpoint('/tmp/att/r50.pt').eval()
from sgjnd.model.pixels import PixelEncoder
torch_enc = PixelEncoder(model.encoder, model.spec).eval()
xt = torch.from_numpy(x)
def eager():
    with torch.inference_mode():
        return torch_enc(xt).numpy()
runs = {'torch eager fp32': eager, **runs}
outs = {k: f() for k, f in runs.items()}
ref = outs['torch eager fp32']
times = {k: [] for k in runs}
for rep in range(6):
    for k, f in runs.items():
        t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
base = np.median(times['torch eager fp32'])
for k, v in times.items():
    o = outs[k]
    cos = float((o * ref).sum() / np.linalg.norm(o) / np.linalg.norm(ref))
    print(f'{k:34s} {1000 * np.median(v) / 16:6.1f} ms/patch  {base / np.median(v):4.2f}x eager  cos {cos:.4f}')
print(open('/proc/loadavg').read())
