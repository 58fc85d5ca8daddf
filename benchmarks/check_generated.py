"""Generated models for the `convertctl check` corpus: what ONNX's node tests leave out.

- `dtype/`: 100 common operators at opset 18 (unary, binary, reductions, shape and data movement,
  convolution, normalization, ...), each with every element type its schema allows for the swept type
  parameter (float, float16, bfloat16, double, int8..uint64, bool, string): the node tests use mostly
  float32, while ONNX Runtime and OpenVINO kernels are registered per type. Plus Cast at opset 23 between
  float and bfloat16 / the 4- and 8-bit types.
- `dynamic/`: some of them with a symbolic batch dim, and with all dims symbolic (ONNX's checker rejects
  graph inputs without a shape, so unknown rank is left out).
- `fusion/`: small multi-node patterns that ONNX Runtime's optimizer fuses (MatMul+Add, Conv+Relu,
  Conv+BatchNormalization, Gemm+Relu, decomposed LayerNorm and Gelu, an attention core) in float, float16,
  double, bfloat16.
- `missing/`: the standard operators the node tests lack (GlobalLpPool, MaxRoiPool, RandomNormal(Like),
  RandomUniform, Multinomial) and ai.onnx.ml operators without node tests (Scaler, Normalizer,
  LinearRegressor, LinearClassifier, Imputer, SVMRegressor, CategoryMapper, FeatureVectorizer, ZipMap,
  OneHotEncoder).

Each model is written as `<suite>/<name>/model.onnx` with `test_data_set_0/input_<j>.pb` (seeded random
data), like the node tests. A spec whose model fails the ONNX checker or strict shape inference is skipped
with the reason.
"""

from __future__ import annotations

from pathlib import Path

FLOATS = ("float", "float16", "bfloat16", "double")


def _np(elem: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem)


def _data(rng, elem: int, shape, kind: str = "any"):
    """Seeded input data of an ONNX element type (positive integers; kind 'index' = small valid indices)."""
    import numpy as np

    shape = tuple(shape)
    if elem == 8:  # string
        return np.array(rng.choice(["1", "2.5", "3"], size=shape), dtype=object)  # numbers: Cast can parse them
    if elem == 9:
        return rng.random(shape) > 0.5
    dt = _np(elem)
    if kind == "index":
        return rng.integers(0, 2, shape).astype(dt)
    if elem in (1, 10, 11, 16):
        return rng.standard_normal(shape).astype(np.float32).astype(dt)
    if elem in (17, 18, 19, 20, 21, 22, 23, 24, 25, 26):
        return (rng.integers(1, 3, shape)).astype(np.float32).astype(dt)
    return rng.integers(1, 5, shape).astype(dt)


def _allowed(op: str, opset: int, param: str, domain: str = "") -> list[int]:
    """The element types the schema allows for a type parameter (tensors only)."""
    import onnx
    from onnx import defs

    schema = defs.get_schema(op, opset, domain)
    names = [tc.type_param_str for tc in schema.type_constraints]
    param = param if param in names else names[0]  # e.g. Identity's V
    for tc in schema.type_constraints:
        if tc.type_param_str == param:
            out = []
            for s in tc.allowed_type_strs:
                if s.startswith("tensor(") and s.endswith(")"):
                    name = s[7:-1].upper()
                    name = {"FLOAT": "FLOAT", "DOUBLE": "DOUBLE", "FLOAT16": "FLOAT16", "BFLOAT16": "BFLOAT16"}.get(
                        name, name)
                    if name.startswith("COMPLEX"):
                        continue
                    if hasattr(onnx.TensorProto, name):
                        out.append(getattr(onnx.TensorProto, name))
            return out
    raise KeyError(f"{op}-{opset} has no type parameter {param}")


class Spec:
    """One model: graph inputs (name, elem, shape or None = unknown rank, data shape, data kind), initializers,
    nodes, opsets."""

    def __init__(self, name: str, nodes, inputs, inits=(), opset: int = 18, extra_opsets=None, ir: int | None = None,
                 out_types=None):
        self.name, self.nodes, self.inputs, self.inits = name, list(nodes), list(inputs), list(inits)
        self.opset, self.extra_opsets, self.ir = opset, dict(extra_opsets or {}), ir
        self.out_types = dict(out_types or {})  # output -> (elem, shape), where shape inference gives none


def _t(name: str, elem: int, value):
    """An initializer of an element type from a python value."""
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(value).astype(np.float32 if elem in (16, 17, 19) else _np(elem))
                                   .astype(_np(elem)), name)


def _i64(name: str, value):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(value, dtype=np.int64), name)


def _dtype_specs() -> list[Spec]:
    from onnx import helper

    n = helper.make_node
    X = [2, 3, 4]
    specs: list[Spec] = []

    def sweep(op, make, param="T", opset=18, domain=""):
        for elem in _allowed(op, opset, param, domain):
            specs.append(make(elem, f"{op.lower()}_{helper.tensor_dtype_to_string(elem).split('.')[-1].lower()}"))

    unary = ["Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil",
             "Round", "Sign", "Erf", "Sin", "Softplus", "HardSwish", "LeakyRelu", "Elu", "Identity", "IsNaN",
             "Not", "BitwiseNot", "Softsign", "HardSigmoid", "Selu", "Acos", "Atan"]
    for op in unary:
        param = "T1" if op == "IsNaN" else "T"
        sweep(op, lambda e, nm, op=op: Spec(nm, [n(op, ["x"], ["y"])], [("x", e, X)]), param)
    binary = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
              "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "PRelu", "Sum", "Mean"]
    for op in binary:
        def make(e, nm, op=op):
            attrs = {"fmod": 1} if op == "Mod" and e in (1, 10, 11, 16) else {}
            return Spec(nm, [n(op, ["a", "b"], ["y"], **attrs)], [("a", e, X), ("b", e, [3, 4])])
        sweep(op, make)
    sweep("BitShift", lambda e, nm: Spec(nm, [n("BitShift", ["a", "b"], ["y"], direction="LEFT")],
                                         [("a", e, X), ("b", e, X, None, "index")]))
    for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp",
               "ReduceSumSquare"]:
        sweep(op, lambda e, nm, op=op: Spec(nm, [n(op, ["x", "axes"], ["y"], keepdims=1)], [("x", e, X)],
                                            [_i64("axes", [1])]))
    for op in ["ArgMax", "ArgMin"]:
        sweep(op, lambda e, nm, op=op: Spec(nm, [n(op, ["x"], ["y"], axis=1)], [("x", e, X)]))
    sweep("Transpose", lambda e, nm: Spec(nm, [n("Transpose", ["x"], ["y"], perm=[2, 0, 1])], [("x", e, X)]))
    sweep("Concat", lambda e, nm: Spec(nm, [n("Concat", ["a", "b"], ["y"], axis=1)], [("a", e, X), ("b", e, X)]))
    sweep("Gather", lambda e, nm: Spec(nm, [n("Gather", ["x", "i"], ["y"], axis=1)], [("x", e, X)],
                                       [_i64("i", [0, 2])]))
    sweep("Gather", lambda e, nm: Spec(nm + "_indices", [n("Gather", ["x", "i"], ["y"], axis=1)],
                                       [("x", 1, X), ("i", e, [2], None, "index")]), "Tind")
    sweep("Slice", lambda e, nm: Spec(nm, [n("Slice", ["x", "s", "t", "a"], ["y"])], [("x", e, X)],
                                      [_i64("s", [1]), _i64("t", [3]), _i64("a", [2])]))
    sweep("Reshape", lambda e, nm: Spec(nm, [n("Reshape", ["x", "s"], ["y"])], [("x", e, X)], [_i64("s", [6, 4])]))
    sweep("Expand", lambda e, nm: Spec(nm, [n("Expand", ["x", "s"], ["y"])], [("x", e, X)], [_i64("s", [2, 2, 3, 4])]))
    sweep("Tile", lambda e, nm: Spec(nm, [n("Tile", ["x", "r"], ["y"])], [("x", e, X)], [_i64("r", [1, 2, 1])]))
    sweep("Where", lambda e, nm: Spec(nm, [n("Where", ["c", "a", "b"], ["y"])],
                                      [("c", 9, X), ("a", e, X), ("b", e, X)]))
    sweep("Unsqueeze", lambda e, nm: Spec(nm, [n("Unsqueeze", ["x", "a"], ["y"])], [("x", e, X)], [_i64("a", [0])]))
    sweep("Squeeze", lambda e, nm: Spec(nm, [n("Squeeze", ["x", "a"], ["y"])], [("x", e, [1, 3, 4])],
                                        [_i64("a", [0])]))
    sweep("Flatten", lambda e, nm: Spec(nm, [n("Flatten", ["x"], ["y"], axis=1)], [("x", e, X)]))
    sweep("Split", lambda e, nm: Spec(nm, [n("Split", ["x", "s"], ["y1", "y2"], axis=2)], [("x", e, X)],
                                      [_i64("s", [2, 2])]))
    sweep("Pad", lambda e, nm: Spec(nm, [n("Pad", ["x", "p"], ["y"])], [("x", e, X)],
                                    [_i64("p", [0, 1, 1, 0, 1, 1])]))
    sweep("Shape", lambda e, nm: Spec(nm, [n("Shape", ["x"], ["y"])], [("x", e, X)]))
    sweep("Size", lambda e, nm: Spec(nm, [n("Size", ["x"], ["y"])], [("x", e, X)]))
    sweep("Cast", lambda e, nm: Spec(nm + "_from_float", [n("Cast", ["x"], ["y"], to=e)], [("x", 1, X)]), "T2")
    sweep("Cast", lambda e, nm: Spec(nm + "_to_float", [n("Cast", ["x"], ["y"], to=1)], [("x", e, X)]), "T1")
    for e in (16, 17, 19, 21, 22, 23):  # the 4/8-bit and bfloat16 types, opset 23 (IR 11)
        name = helper.tensor_dtype_to_string(e).split(".")[-1].lower()
        specs.append(Spec(f"cast23_float_to_{name}", [n("Cast", ["x"], ["y"], to=e)], [("x", 1, X)], opset=23, ir=11))
        specs.append(Spec(f"cast23_{name}_to_float", [n("Cast", ["x"], ["y"], to=1)], [("x", e, [2, 3, 4])],
                          opset=23, ir=11))
    sweep("Clip", lambda e, nm: Spec(nm, [n("Clip", ["x", "lo", "hi"], ["y"])], [("x", e, X)],
                                     [_t("lo", e, 0), _t("hi", e, 3)]))
    sweep("MatMul", lambda e, nm: Spec(nm, [n("MatMul", ["a", "b"], ["y"])], [("a", e, X), ("b", e, [4, 5])]))
    sweep("Gemm", lambda e, nm: Spec(nm, [n("Gemm", ["a", "b", "c"], ["y"])],
                                     [("a", e, [3, 4]), ("b", e, [4, 5]), ("c", e, [5])]))
    sweep("TopK", lambda e, nm: Spec(nm, [n("TopK", ["x", "k"], ["v", "i"], axis=-1)], [("x", e, X)],
                                     [_i64("k", [2])]))
    sweep("CumSum", lambda e, nm: Spec(nm, [n("CumSum", ["x", "a"], ["y"])], [("x", e, X)],
                                       [_i64("a", 1)]))
    for op in ("Softmax", "LogSoftmax"):
        sweep(op, lambda e, nm, op=op: Spec(nm, [n(op, ["x"], ["y"], axis=-1)], [("x", e, X)]))
    img = [1, 2, 5, 5]
    sweep("Conv", lambda e, nm: Spec(nm, [n("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
                                     [("x", e, img), ("w", e, [3, 2, 3, 3])]))
    sweep("ConvTranspose", lambda e, nm: Spec(nm, [n("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3, 3])],
                                              [("x", e, img), ("w", e, [2, 3, 3, 3])]))
    sweep("MaxPool", lambda e, nm: Spec(nm, [n("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])], [("x", e, img)]))
    sweep("AveragePool", lambda e, nm: Spec(nm, [n("AveragePool", ["x"], ["y"], kernel_shape=[2, 2])],
                                            [("x", e, img)]))
    sweep("GlobalAveragePool", lambda e, nm: Spec(nm, [n("GlobalAveragePool", ["x"], ["y"])], [("x", e, img)]))
    sweep("BatchNormalization", lambda e, nm: Spec(
        nm, [n("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
        [("x", e, img), ("s", e, [2]), ("b", e, [2]), ("m", e, [2]), ("v", e, [2], None, "index")]))
    sweep("LayerNormalization", lambda e, nm: Spec(nm, [n("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)],
                                                   [("x", e, X), ("s", e, [4]), ("b", e, [4])]))
    sweep("InstanceNormalization", lambda e, nm: Spec(nm, [n("InstanceNormalization", ["x", "s", "b"], ["y"])],
                                                      [("x", e, img), ("s", e, [2]), ("b", e, [2])]))
    sweep("GatherElements", lambda e, nm: Spec(nm, [n("GatherElements", ["x", "i"], ["y"], axis=1)], [("x", e, X)],
                                               [_i64("i", [[[0, 1, 0, 1]] * 3] * 2)]))
    sweep("ScatterElements", lambda e, nm: Spec(nm, [n("ScatterElements", ["x", "i", "u"], ["y"], axis=1)],
                                                [("x", e, X), ("u", e, [2, 1, 4])],
                                                [_i64("i", [[[0, 1, 0, 1]]] * 2)]))
    sweep("NonZero", lambda e, nm: Spec(nm, [n("NonZero", ["x"], ["y"])], [("x", e, X)]))
    sweep("Trilu", lambda e, nm: Spec(nm, [n("Trilu", ["x"], ["y"])], [("x", e, X)]))
    sweep("Einsum", lambda e, nm: Spec(nm, [n("Einsum", ["a", "b"], ["y"], equation="bij,jk->bik")],
                                       [("a", e, X), ("b", e, [4, 5])]))
    sweep("ConstantOfShape", lambda e, nm: Spec(
        nm, [n("ConstantOfShape", ["s"], ["y"], value=_t("v", e, [1]))], [("s", 7, [3], None, "shape")]), "T2")
    sweep("Range", lambda e, nm: Spec(nm, [n("Range", ["s", "l", "d"], ["y"])], [],
                                      [_t("s", e, 0), _t("l", e, 4), _t("d", e, 1)]))
    sweep("EyeLike", lambda e, nm: Spec(nm, [n("EyeLike", ["x"], ["y"])], [("x", e, [3, 4])]), "T1")
    sweep("DepthToSpace", lambda e, nm: Spec(nm, [n("DepthToSpace", ["x"], ["y"], blocksize=2)],
                                             [("x", e, [1, 4, 2, 2])]))
    sweep("Resize", lambda e, nm: Spec(nm, [n("Resize", ["x", "", "sc"], ["y"], mode="nearest")], [("x", e, img)],
                                       [_t("sc", 1, [1, 1, 2, 2])]), "T1")
    return specs


def _dynamic_specs() -> list[Spec]:
    """A symbolic batch dim, and inputs of unknown rank."""
    from onnx import helper

    n = helper.make_node
    specs = []
    for e in (1, 10, 7):
        en = helper.tensor_dtype_to_string(e).split(".")[-1].lower()
        for shape, tag in ((["N", 3, 4], "batch"), (["N", "C", "L"], "alldims")):
            specs += [
                Spec(f"add_{tag}_{en}", [n("Add", ["a", "b"], ["y"])], [("a", e, shape, [2, 3, 4]), ("b", e, [4])]),
                Spec(f"relu_{tag}_{en}", [n("Relu", ["x"], ["y"])], [("x", e, shape, [2, 3, 4])]),
                Spec(f"reducesum_{tag}_{en}", [n("ReduceSum", ["x", "a"], ["y"])], [("x", e, shape, [2, 3, 4])],
                     [_i64("a", [1])]),
                Spec(f"unsqueeze_{tag}_{en}", [n("Unsqueeze", ["x", "a"], ["y"])], [("x", e, shape, [2, 3, 4])],
                     [_i64("a", [0])]),
                Spec(f"transpose_{tag}_{en}", [n("Transpose", ["x"], ["y"], perm=[1, 0, 2])],
                     [("x", e, shape, [2, 3, 4])]),
                Spec(f"softmax_{tag}_{en}", [n("Softmax", ["x"], ["y"])], [("x", e, shape, [2, 3, 4])]),
                Spec(f"matmul_{tag}_{en}", [n("MatMul", ["a", "b"], ["y"])],
                     [("a", e, shape, [2, 3, 4]), ("b", e, [4, 5])]),
                Spec(f"reshape_{tag}_{en}", [n("Reshape", ["x", "s"], ["y"])], [("x", e, shape, [2, 3, 4])],
                     [_i64("s", [-1, 4])]),
                Spec(f"gather_{tag}_{en}", [n("Gather", ["x", "i"], ["y"])], [("x", e, shape, [2, 3, 4])],
                     [_i64("i", [0, 1])]),
                Spec(f"concat_{tag}_{en}", [n("Concat", ["a", "b"], ["y"], axis=0)],
                     [("a", e, shape, [2, 3, 4]), ("b", e, [1, 3, 4])]),
            ]
        specs.append(Spec(f"conv_batch_{en}", [n("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
                          [("x", e, ["N", 2, "H", "W"], [1, 2, 5, 5]), ("w", e, [3, 2, 3, 3])]))
    return [s for s in specs if not (s.name.startswith(("softmax", "conv")) and s.name.endswith("int64"))]


def _fusion_specs() -> list[Spec]:
    from onnx import helper

    n = helper.make_node
    specs = []
    for en in FLOATS:
        e = {"float": 1, "float16": 10, "bfloat16": 16, "double": 11}[en]
        specs += [
            Spec(f"matmul_add_{en}", [n("MatMul", ["a", "w"], ["m"]), n("Add", ["m", "b"], ["y"])],
                 [("a", e, [3, 4]), ("w", e, [4, 5]), ("b", e, [5])]),
            Spec(f"conv_relu_{en}", [n("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3]), n("Relu", ["c"], ["y"])],
                 [("x", e, [1, 2, 5, 5]), ("w", e, [3, 2, 3, 3]), ("b", e, [3])]),
            Spec(f"conv_bn_{en}", [n("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
                                   n("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"])],
                 [("x", e, [1, 2, 5, 5])],
                 [_t("w", e, [[[[0.1] * 3] * 3] * 2] * 3), _t("s", e, [1, 1, 1]), _t("bb", e, [0, 0, 0]),
                  _t("m", e, [0, 0, 0]), _t("v", e, [1, 1, 1])]),
            Spec(f"gemm_relu_{en}", [n("Gemm", ["a", "w", "b"], ["g"]), n("Relu", ["g"], ["y"])],
                 [("a", e, [3, 4]), ("w", e, [4, 5]), ("b", e, [5])]),
            Spec(f"layernorm_decomposed_{en}", [
                n("ReduceMean", ["x", "ax"], ["mu"]), n("Sub", ["x", "mu"], ["d"]), n("Pow", ["d", "two"], ["d2"]),
                n("ReduceMean", ["d2", "ax"], ["var"]), n("Add", ["var", "eps"], ["ve"]), n("Sqrt", ["ve"], ["sd"]),
                n("Div", ["d", "sd"], ["nrm"]), n("Mul", ["nrm", "g"], ["sc"]), n("Add", ["sc", "be"], ["y"])],
                [("x", e, [2, 3, 4])],
                [_i64("ax", [-1]), _t("two", e, 2.0), _t("eps", e, 1e-5), _t("g", e, [1, 1, 1, 1]),
                 _t("be", e, [0, 0, 0, 0])]),
            Spec(f"gelu_decomposed_{en}", [
                n("Div", ["x", "sq2"], ["a"]), n("Erf", ["a"], ["b"]), n("Add", ["b", "one"], ["c"]),
                n("Mul", ["x", "c"], ["d"]), n("Mul", ["d", "half"], ["y"])],
                [("x", e, [2, 3, 4])], [_t("sq2", e, 1.4142135), _t("one", e, 1.0), _t("half", e, 0.5)]),
            Spec(f"attention_core_{en}", [
                n("MatMul", ["q", "kt"], ["s"]), n("Mul", ["s", "scale"], ["ss"]), n("Softmax", ["ss"], ["p"], axis=-1),
                n("MatMul", ["p", "v"], ["y"])],
                [("q", e, [2, 3, 4]), ("kt", e, [2, 4, 3]), ("v", e, [2, 3, 4])], [_t("scale", e, 0.5)]),
        ]
    return specs


def _missing_specs() -> list[Spec]:
    from onnx import helper

    n = helper.make_node
    ml = {"ai.onnx.ml": 3}
    return [
        Spec("globallppool", [n("GlobalLpPool", ["x"], ["y"], p=2)], [("x", 1, [1, 2, 5, 5])]),
        Spec("maxroipool", [n("MaxRoiPool", ["x", "r"], ["y"], pooled_shape=[2, 2])], [("x", 1, [1, 2, 6, 6])],
             [_t("r", 1, [[0, 0, 0, 3, 3]])]),
        Spec("randomnormal", [n("RandomNormal", [], ["y"], shape=[2, 3], seed=1.0)], []),
        Spec("randomnormallike", [n("RandomNormalLike", ["x"], ["y"], seed=1.0)], [("x", 1, [2, 3])]),
        Spec("randomuniform", [n("RandomUniform", [], ["y"], shape=[2, 3], seed=1.0)], []),
        Spec("randomuniformlike", [n("RandomUniformLike", ["x"], ["y"], seed=1.0)], [("x", 1, [2, 3])]),
        Spec("multinomial", [n("Multinomial", ["x"], ["y"], sample_size=3, seed=1.0)], [("x", 1, [1, 4])]),
        Spec("ml_scaler", [n("Scaler", ["x"], ["y"], domain="ai.onnx.ml", offset=[0.5], scale=[2.0])],
             [("x", 1, [3, 4])], extra_opsets=ml, out_types={"y": (1, [3, 4])}),
        Spec("ml_normalizer", [n("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2")], [("x", 1, [3, 4])],
             extra_opsets=ml, out_types={"y": (1, [3, 4])}),
        Spec("ml_linearregressor", [n("LinearRegressor", ["x"], ["y"], domain="ai.onnx.ml",
                                      coefficients=[0.1, 0.2, 0.3, 0.4], intercepts=[1.0])],
             [("x", 1, [3, 4])], extra_opsets=ml, out_types={"y": (1, [3, 1])}),
        Spec("ml_linearclassifier", [n("LinearClassifier", ["x"], ["l", "s"], domain="ai.onnx.ml",
                                       coefficients=[0.1] * 8, intercepts=[0.0, 1.0], classlabels_ints=[0, 1])],
             [("x", 1, [3, 4])], extra_opsets=ml),
        Spec("ml_imputer", [n("Imputer", ["x"], ["y"], domain="ai.onnx.ml", imputed_value_floats=[0.0],
                              replaced_value_float=1.0)], [("x", 1, [3, 4])], extra_opsets=ml,
             out_types={"y": (1, [3, 4])}),
        Spec("ml_svmregressor", [n("SVMRegressor", ["x"], ["y"], domain="ai.onnx.ml", coefficients=[1.0, -1.0],
                                   support_vectors=[0.0] * 4 + [1.0] * 4, n_supports=2, rho=[0.0],
                                   kernel_type="LINEAR")], [("x", 1, [3, 4])], extra_opsets=ml,
             out_types={"y": (1, [3, 1])}),
        Spec("ml_categorymapper", [n("CategoryMapper", ["x"], ["y"], domain="ai.onnx.ml", cats_int64s=[1, 2, 3],
                                     cats_strings=["a", "b", "c"], default_string="z")],
             [("x", 7, [3, 4])], extra_opsets=ml),
        Spec("ml_featurevectorizer", [n("FeatureVectorizer", ["a", "b"], ["y"], domain="ai.onnx.ml",
                                        inputdimensions=[4, 2])], [("a", 1, [3, 4]), ("b", 1, [3, 2])],
             extra_opsets=ml, out_types={"y": (1, [3, 6])}),
        Spec("ml_onehotencoder", [n("OneHotEncoder", ["x"], ["y"], domain="ai.onnx.ml", cats_int64s=[1, 2, 3, 4])],
             [("x", 7, [3, 4])], extra_opsets=ml),
        Spec("ml_zipmap", [n("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2, 3])],
             [("x", 1, [3, 4])], extra_opsets=ml),
    ]


def _write(spec: Spec, folder: Path, rng) -> None:
    import onnx
    from onnx import helper, numpy_helper

    inputs, datas = [], []
    for entry in spec.inputs:
        name, elem, shape = entry[:3]
        data_shape = entry[3] if len(entry) > 3 and entry[3] is not None else shape
        kind = entry[4] if len(entry) > 4 else "any"
        inputs.append(helper.make_tensor_value_info(name, elem, shape))
        if kind == "shape":
            import numpy as np

            datas.append(np.array([2, 3, 4], dtype=_np(elem)))
        else:
            datas.append(_data(rng, elem, data_shape, kind))
    outputs = [helper.make_tensor_value_info(o, *spec.out_types[o]) if o in spec.out_types
               else onnx.ValueInfoProto(name=o) for node in spec.nodes for o in node.output
               if o and not any(o in m.input for m in spec.nodes)]
    graph = helper.make_graph(spec.nodes, spec.name, inputs, outputs, initializer=spec.inits)
    opsets = [helper.make_opsetid("", spec.opset)] + [helper.make_opsetid(d, v) for d, v in spec.extra_opsets.items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = spec.ir or 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for o in model.graph.output:
        if not o.type.WhichOneof("value"):
            raise ValueError(f"shape inference gives no type for output {o.name}")
    onnx.checker.check_model(model, full_check=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    ds = folder / "test_data_set_0"
    ds.mkdir(exist_ok=True)
    for j, (info, value) in enumerate(zip(inputs, datas, strict=True)):
        (ds / f"input_{j}.pb").write_bytes(numpy_helper.from_array(value, info.name).SerializeToString())


def build(root: Path) -> tuple[list[dict], list[dict]]:
    """Write every generated model under root; (entries for the index, skipped specs with reasons)."""
    import warnings
    import zlib

    import numpy as np

    entries, skipped = [], []
    for suite, make in (("dtype", _dtype_specs), ("dynamic", _dynamic_specs), ("fusion", _fusion_specs),
                        ("missing", _missing_specs)):
        for spec in make():
            rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
            folder = root / suite / spec.name
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _write(spec, folder, rng)
            except Exception as e:  # noqa: BLE001
                skipped.append({"id": f"generated-{suite}/{spec.name}",
                                "reason": " ".join(str(e).split())[:300]})
                continue
            entries.append({"id": f"generated-{suite}/{spec.name}", "suite": f"generated-{suite}", "dir": str(folder)})
    return entries, skipped
