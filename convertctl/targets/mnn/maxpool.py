"""Work around MNN 3.6.1's wrong INT8 max pooling on x86: run every MaxPool of an INT8 model in float.

The defect (measured, and read in MNN's source): on x86 (SSE/AVX2/AVX-512 builds, `MNN_USE_SSE`) MNN keeps INT8
activations in memory as *uint8* with an offset of 128 (the VNNI kernels multiply u8 x s8; `MNNAvgPoolUint8` and
`MNNBinaryAddInt8` read them so). `MNNMaxPoolInt8_` (source/backend/cpu/x86_x64/FunctionDispatcher.cpp), used by
`CPUPoolInt8`, compares those bytes as *signed* int8: a stored 200 (real +72) reads as -56 and loses to a stored 100
(real -28). A window holding both signs returns its largest *negative* value. A MaxPool after a ReLU sees only
values >= 0 and is right, which is why the digits CNN passes; the FER model's MaxPools follow a BatchNorm and every
residual block after the first comes out wrong (output cosine 0.51). Simulating the signed comparison on the INT8
model's own input tensor reproduces MNN's MaxPool output exactly.

The runtime runs a Pooling in INT8 only when its input and output carry the *same* scale and zero point
(CPUBackend `_supportQuant`); otherwise it inserts Int8ToFloat / FloatToInt8 around it and pools in float. KL gives
a pooling output its input's scale, and `skip_quant_op_names` cannot stop that (KL copies the scale to the pooling
output whether skipped or not, and the runtime propagates the input's scale through a Pooling whose output has none).
So after quantizing, each such MaxPool's output scale is set 0.01 % above its input's: the runtime pools in float,
and the next layer quantizes the result with a scale that differs by 1e-4 (no measurable effect). ADMM computes a
scale of its own for a pooling output (MNN pools those in float already); EMA may write none at all, which cannot be
added in place: the caller refuses such a model unless the pooled values cannot be negative.

The model file is a flatbuffer (schema/default/MNN.fbs); the scales are float32 fields the quantizer wrote with
`ForceDefaults(true)`, so each is patched in place and nothing else in the file changes. (MNNConvert's MNN -> JSON ->
MNN round trip would also do, but prints every float with 6 significant digits.)

The same step from the command line, as an artifact's README.md gives it (after `quantized.out`):

    python -m convertctl.targets.mnn.maxpool model.mnn [-o patched.mnn]

rewrites the model in place (or writes the patched copy to `-o`) and prints the MaxPools it changed; it exits 1 when
an INT8 MaxPool that may see negative values could not be moved to float (the build refuses such a model).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

# field ids in MNN.fbs (a union takes two: its type, then its value)
_NET_EXTRA_TENSOR_DESCRIBE, _NET_OPLISTS = 1, 3
_OP_MAIN_TYPE, _OP_MAIN, _OP_NAME, _OP_INPUTS, _OP_OUTPUTS, _OP_TYPE = 1, 2, 3, 0, 4, 5
_DESC_INDEX, _DESC_QUANT = 1, 4
_QUANT_SCALE, _QUANT_ZERO = 0, 1
_POOL_TYPE = 7
_RELU_SLOPE, _RELU6_MIN = 0, 0
_CONV_COMMON, _COMMON_RELU, _COMMON_RELU6 = 0, 12, 13
OPTYPE_POOLING, PARAM_POOL, POOL_MAX = 47, 31, 0
OPTYPE_RELU, OPTYPE_RELU6, PARAM_CONV2D = 69, 70, 9
OPTYPE_CONVS = {12, 13, 513, 515}  # Convolution, ConvolutionDepthwise, ConvInt8, DepthwiseConvInt8
NUDGE = 1.0001  # the output scale relative to the input's: different enough that MNN pools in float


class _Buf:
    """Just enough of the flatbuffer wire format to find tables, vectors and scalar fields."""

    def __init__(self, data: bytearray):
        self.data = data

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def field(self, table: int, fid: int) -> int | None:
        """The position of field `fid` of the table at `table`, or None where the file leaves it out."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vsize = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * fid
        if slot >= vsize:
            return None
        off = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + off if off else None

    def ref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def tables(self, table: int, fid: int) -> list[int]:
        pos = self.field(table, fid)
        if pos is None:
            return []
        vec = self.ref(pos)
        return [self.ref(vec + 4 + 4 * i) for i in range(self.u32(vec))]

    def ints(self, table: int, fid: int) -> list[int]:
        pos = self.field(table, fid)
        if pos is None:
            return []
        vec = self.ref(pos)
        return list(struct.unpack_from(f"<{self.u32(vec)}i", self.data, vec + 4))

    def scalar(self, table: int, fid: int, fmt: str, default=0):
        pos = self.field(table, fid)
        return default if pos is None else struct.unpack_from("<" + fmt, self.data, pos)[0]

    def string(self, table: int, fid: int) -> str:
        pos = self.field(table, fid)
        if pos is None:
            return ""
        s = self.ref(pos)
        return bytes(self.data[s + 4:s + 4 + self.u32(s)]).decode("utf-8", errors="replace")


def float_maxpools(model: Path, out: Path | None = None) -> tuple[list[str], list[str]]:
    """Make MNN run every INT8 MaxPool of `model` (a quantized model.mnn) in float; rewrites the file in place, or
    writes the result to `out` (always, changed or not) when given.
    Returns (the MaxPools moved to float, the INT8 MaxPools left as they are that may see negative values).

    A MaxPool is left when its output has no scale of its own (the EMA quantizer writes none; the runtime then
    gives it the input's, and a scale cannot be added in place). It is harmless when what it pools cannot be
    negative (a ReLU or ReLU6, or a convolution with one fused). Subgraphs (control flow) are not visited."""
    buf = _Buf(bytearray(Path(model).read_bytes()))
    net = buf.u32(0)
    quant = {}  # tensor index -> its TensorQuantInfo table
    for desc in buf.tables(net, _NET_EXTRA_TENSOR_DESCRIBE):
        q = buf.field(desc, _DESC_QUANT)
        if q is not None:
            quant[buf.scalar(desc, _DESC_INDEX, "i")] = buf.ref(q)
    ops = buf.tables(net, _NET_OPLISTS)
    producer = {t: op for op in ops for t in buf.ints(op, _OP_OUTPUTS)}
    changed, left = [], []
    for op in ops:
        if buf.scalar(op, _OP_TYPE, "i") != OPTYPE_POOLING or buf.scalar(op, _OP_MAIN_TYPE, "B") != PARAM_POOL:
            continue
        main = buf.field(op, _OP_MAIN)
        if main is None or buf.scalar(buf.ref(main), _POOL_TYPE, "b", POOL_MAX) != POOL_MAX:
            continue
        ins, outs = buf.ints(op, _OP_INPUTS), buf.ints(op, _OP_OUTPUTS)
        if not ins or not outs or ins[0] not in quant:
            continue  # its input is float: MNN pools in float
        src = quant[ins[0]]
        scale = buf.scalar(src, _QUANT_SCALE, "f")
        dst = quant.get(outs[0])
        if dst is None:  # the runtime propagates the input's scale to it: INT8, and nothing to patch in place
            if not _non_negative(buf, producer.get(ins[0])):
                left.append(buf.string(op, _OP_NAME))
            continue
        if (scale, buf.scalar(src, _QUANT_ZERO, "f")) != (buf.scalar(dst, _QUANT_SCALE, "f"),
                                                         buf.scalar(dst, _QUANT_ZERO, "f")):
            continue  # scales differ (ADMM): MNN pools this one in float already
        where = buf.field(dst, _QUANT_SCALE)
        if where is None:  # a scale left at its default is not stored; never written so by 3.6.1's quantizer
            left.append(buf.string(op, _OP_NAME))
            continue
        struct.pack_into("<f", buf.data, where, scale * NUDGE)
        changed.append(buf.string(op, _OP_NAME))
    if out is not None and Path(out).resolve() != Path(model).resolve():
        Path(out).write_bytes(bytes(buf.data))
    elif changed:
        Path(model).write_bytes(bytes(buf.data))
    return changed, left


def _non_negative(buf: _Buf, op: int | None) -> bool:
    """Whether `op`'s output cannot be negative: a ReLU (slope 0), a ReLU6 from >= 0, a convolution with either fused."""
    if op is None:
        return False
    kind, main = buf.scalar(op, _OP_TYPE, "i"), buf.field(op, _OP_MAIN)
    if main is None:
        return kind == OPTYPE_RELU  # a ReLU without parameters has slope 0
    main = buf.ref(main)
    if kind == OPTYPE_RELU:
        return buf.scalar(main, _RELU_SLOPE, "f") == 0
    if kind == OPTYPE_RELU6:
        return buf.scalar(main, _RELU6_MIN, "f") >= 0
    if kind in OPTYPE_CONVS and buf.scalar(op, _OP_MAIN_TYPE, "B") == PARAM_CONV2D:
        common = buf.field(main, _CONV_COMMON)
        return common is not None and bool(buf.scalar(buf.ref(common), _COMMON_RELU, "B")
                                           or buf.scalar(buf.ref(common), _COMMON_RELU6, "B"))
    return False


def main(argv: list[str] | None = None) -> int:
    """`python -m convertctl.targets.mnn.maxpool model.mnn [-o out.mnn]`: the build's MaxPool step on its own."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m convertctl.targets.mnn.maxpool",
        description="Make MNN run every INT8 MaxPool of a quantized model.mnn in float (MNN 3.6.1's x86 INT8 MaxPool "
                    "compares its uint8-stored values as signed int8): each one's output scale is set 0.01 % above "
                    "its input's, in place. The step convertctl runs after MNN's offline quantizer.")
    parser.add_argument("model", type=Path, help="the quantizer's output (quantized.out's second argument)")
    parser.add_argument("-o", "--output", type=Path, help="write the patched model here instead of in place")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no such file: {args.model}")
    try:
        changed, left = float_maxpools(args.model, args.output)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        print(f"error: {args.model} is not an MNN model this reader understands ({exc})", file=sys.stderr)
        return 2
    where = args.output or args.model
    if changed:
        print(f"{where}: {len(changed)} INT8 MaxPool(s) set to run in float: {', '.join(changed)}")
    else:
        print(f"{where}: no INT8 MaxPool to change (none, already float, or patched before)")
    if left:
        print(f"error: left in INT8 with no output scale of their own, so they cannot run in float, and what they pool "
              f"may be negative: {', '.join(left)} (quantize with KL or ADMM; docs/mnn.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
