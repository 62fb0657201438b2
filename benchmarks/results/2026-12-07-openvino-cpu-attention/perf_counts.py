"""PERF_COUNT of OpenVINO on the old/new U8S8 r50 encoder: ms per patch in the csa layers vs the rest."""
import collections, numpy as np, openvino as ov
x = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
core = ov.Core()
for n in ['old', 'new']:
    m = core.read_model(f'/tmp/att/{n}/encoder.int8-ort.onnx')
    m.reshape({m.inputs[0].get_any_name(): [16, 224, 224, 3]})
    c = core.compile_model(m, 'CPU', {'INFERENCE_NUM_THREADS': 2, 'PERF_COUNT': True, 'PERFORMANCE_HINT': 'LATENCY'})
    r = c.create_infer_request()
    for _ in range(3):
        r.infer({0: x})
    tot = collections.Counter()
    for _ in range(3):
        r.infer({0: x})
        for p in r.profiling_info:
            key = 'csa.0' if 'csa.0' in p.node_name else 'csa.1/2' if ('csa.1' in p.node_name or 'csa.2' in p.node_name) else 'rest'
            tot[key] += p.real_time.total_seconds() * 1000 / 3 / 16
    print(n, {k: round(v, 2) for k, v in tot.items()}, 'total', round(sum(tot.values()), 2), 'ms/patch')
