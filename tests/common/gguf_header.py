"""The header of a GGUF file, read with the standard library only: the metadata and the
tensor table (shared by the conformance and bench scripts that inspect GGUF files)."""
import struct

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}
STRING, ARRAY = 8, 9


def read_header(buf, where="GGUF"):
    """(meta, tensors) of the GGUF bytes `buf` (the file's start, at least up to the end of its
    tensor table): meta {key: (type, value)} in file order, tensors [(name, dims, type,
    absolute data offset)]."""
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

    def value(t):
        if t == STRING:
            return string()
        if t == ARRAY:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    if bytes(buf[:4]) != b"GGUF":
        raise ValueError(f"{where}: not a GGUF file")
    pos = 4
    take("I")  # version
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        key = string()
        t = take("I")
        meta[key] = (t, value(t))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    align = meta.get("general.alignment", (4, 32))[1]
    base = (pos + align - 1) // align * align
    return meta, [(name, dims, t, base + off) for name, dims, t, off in infos]
