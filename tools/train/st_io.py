"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

Format: u64 little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end)}} (offsets relative to the first byte
after the header; header space-padded to a multiple of 8), then raw little-endian row-major data.
"""
import json
import struct

import numpy as np

_NP2ST = {np.dtype('float32'): 'F32', np.dtype('float64'): 'F64', np.dtype('int64'): 'I64',
          np.dtype('int32'): 'I32', np.dtype('uint8'): 'U8', np.dtype('float16'): 'F16',
          np.dtype('bool'): 'BOOL'}
_ST2NP = {v: k for k, v in _NP2ST.items()}


def _to_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    # torch tensor
    return t.detach().cpu().contiguous().numpy()


def save_file(tensors, path, metadata=None):
    """tensors: dict name -> numpy array or torch tensor. Keys are written in sorted order."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(_to_numpy(tensors[name]))
        if a.dtype not in _NP2ST:
            raise TypeError(f'{name}: unsupported dtype {a.dtype}')
        a = a.astype(a.dtype.newbyteorder('<'), copy=False)
        b = a.tobytes(order='C')
        header[name] = {'dtype': _NP2ST[a.dtype.newbyteorder('=')], 'shape': list(a.shape),
                        'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load_file(path):
    """Returns (dict name -> numpy array, metadata dict)."""
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = np.dtype(_ST2NP[info['dtype']]).newbyteorder('<')
        b, e = info['data_offsets']
        a = np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=base + b)
        out[name] = a.reshape(info['shape']).astype(dt.newbyteorder('='))
    return out, meta


def load_torch(path):
    import torch
    arrs, meta = load_file(path)
    return {k: torch.from_numpy(np.array(v)) for k, v in arrs.items()}, meta
