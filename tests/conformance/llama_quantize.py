#!/usr/bin/env python3
"""Runs llama.cpp's own quantizer (llama_model_quantize from node-llama-cpp's prebuilt
libllama, through ctypes) and optionally compares its output with another GGUF.

  llama_quantize.py --in F16.gguf --out REF.gguf --type Q4_K_M [--compare STRATA.gguf]
                    [--lib-dir DIR]

--compare: checks that both files hold the same metadata (keys in the same order, same
values), the same tensors in the same order with the same types and dims, and the same tensor
data bytes; prints the differences. Exit status 1 on any mismatch, 2 on usage errors (also
when node-llama-cpp's libllama cannot be found).
"""
import argparse
import ctypes
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gguf_header  # noqa: E402

FTYPES = {"Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


class QuantizeParams(ctypes.Structure):
    # llama.h: struct llama_model_quantize_params (this llama.cpp release).
    _fields_ = [
        ("nthread", ctypes.c_int32),
        ("ftype", ctypes.c_int),
        ("output_tensor_type", ctypes.c_int),
        ("token_embedding_type", ctypes.c_int),
        ("allow_requantize", ctypes.c_bool),
        ("quantize_output_tensor", ctypes.c_bool),
        ("only_copy", ctypes.c_bool),
        ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool),
        ("dry_run", ctypes.c_bool),
        ("imatrix", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
        ("tt_overrides", ctypes.c_void_p),
        ("prune_layers", ctypes.c_void_p),
        ("max_buf_size", ctypes.c_size_t),
    ]


def find_lib_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    roots = [os.path.join(here, "node_modules")]
    if os.environ.get("NODE_LLAMA_CPP_DIR"):  # .../node_modules/node-llama-cpp
        roots.insert(0, os.path.dirname(os.path.abspath(os.environ["NODE_LLAMA_CPP_DIR"])))
    for root in roots:
        hits = glob.glob(os.path.join(root, "@node-llama-cpp", "linux-x64", "bins", "linux-x64",
                                      "libllama*.so"))
        if hits:
            return os.path.dirname(hits[0])
    return None


def llama_quantize(inp, out, ftype, lib_dir, nthread=2):
    # Load the dependencies first so that libllama resolves them from the same directory.
    for dep in ("libggml-base.so", "libggml.v*.so", "libllama.v*.so"):
        for path in sorted(glob.glob(os.path.join(lib_dir, dep))):
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.POINTER(QuantizeParams)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    if hasattr(lib, "llama_backend_init"):
        lib.llama_backend_init()
    p = lib.llama_model_quantize_default_params()
    p.ftype = FTYPES[ftype]
    p.nthread = nthread
    rc = lib.llama_model_quantize(inp.encode(), out.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed with {rc}")


# --- GGUF tensors (the header: tests/common/gguf_header.py) ---------------------------------
# Elements per block and bytes per block of each ggml type id.
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 13: (256, 176),
         14: (256, 210), 30: (1, 2), 6: (32, 22), 7: (32, 24)}


def read_gguf(path):
    """(meta {key: (type, value)}, [(name, dims, type, data bytes)]) of a GGUF file."""
    data = open(path, "rb").read()
    meta, tensors = gguf_header.read_header(data, path)
    out = []
    for name, dims, tt, at in tensors:
        n = 1
        for d in dims:
            n *= d
        bs, bb = BLOCK[tt]
        out.append((name, dims, tt, data[at:at + n // bs * bb]))
    return meta, out


def compare(ref_path, got_path):
    rmeta, rt = read_gguf(ref_path)
    gmeta, gt = read_gguf(got_path)
    bad = 0
    if list(rmeta.keys()) != list(gmeta.keys()):
        print(f"metadata keys differ:\n  llama.cpp: {list(rmeta.keys())}\n  strata:    {list(gmeta.keys())}")
        bad += 1
    for k in rmeta:
        if k in gmeta and rmeta[k] != gmeta[k]:
            print(f"metadata {k} differs: llama.cpp {str(rmeta[k])[:80]} strata {str(gmeta[k])[:80]}")
            bad += 1
    if [t[:3] for t in rt] != [t[:3] for t in gt]:
        print("tensor list (order, dims, types) differs")
        for a, b in zip(rt, gt):
            if a[:3] != b[:3]:
                print(f"  llama.cpp {a[:3]}  strata {b[:3]}")
        bad += 1
    same = 0
    for a, b in zip(rt, gt):
        if a[:3] == b[:3]:
            if a[3] == b[3]:
                same += 1
            else:
                diff = sum(1 for x, y in zip(a[3], b[3]) if x != y)
                print(f"tensor {a[0]} ({a[2]}): {diff} of {len(a[3])} bytes differ")
                bad += 1
    print(f"compare: {same}/{len(rt)} tensors byte-identical, {bad} problems")
    return bad == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--type", required=True, type=str.upper, choices=sorted(FTYPES))
    ap.add_argument("--compare")
    ap.add_argument("--lib-dir")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    lib_dir = a.lib_dir or find_lib_dir()
    if not lib_dir:
        print("llama_quantize: libllama not found (node-llama-cpp not installed)", file=sys.stderr)
        return 2
    llama_quantize(a.inp, a.out, a.type, lib_dir, a.threads)
    if a.compare:
        return 0 if compare(a.out, a.compare) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
