"""onnx2tf 1.29.24's own operator list: the ONNX operators it has a converter module for (`onnx2tf/ops/<Op>.py`,
imported by op type; a type without one fails with "<Op> OP is not yet implemented"), and those its README's table
marks as partially supported. Read from the 1.29.24 wheel and README, so `check` needs no onnx2tf environment.

Note: the issue's list of unsupported operators (Loop, Scan, DeformConv, DFT, GroupNormalization, the bitwise ops)
is out of date for 1.29.24: all of them have a converter; DeformConv and DFT are marked partial."""

from __future__ import annotations

ONNX2TF_VERSION = "1.29.24"

CONVERTED = frozenset("""
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Cast Ceil Celu CenterCropPad Clip
Col2Im Compress Concat ConcatFromSequence Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh
CumProd CumSum DFT DeformConv DepthToSpace DequantizeLinear Det Div Dropout DynamicQuantizeLinear Einsum Elu
Equal Erf Exp Expand EyeLike Flatten Floor FusedConv GRU Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNorm GroupNormalization
HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageDecoder InstanceNormalization Inverse
IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
MatMul MatMulInteger Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization MelWeightMatrix Min Mish
Mod Mul Multinomial Neg NegativeLogLikelihoodLoss NonMaxSuppression NonZero Not OneHot Optional
OptionalGetElement OptionalHasElement Or PRelu Pad Pow QLinearAdd QLinearConcat QLinearConv QLinearLeakyRelu
QLinearMatMul QLinearMul QLinearSigmoid QLinearSoftmax QuantizeLinear RMSNormalization RNN RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare RegexFullMatch Relu
Reshape Resize ReverseSequence RoiAlign RotaryEmbedding Round STFT ScaleAndTranslate Scan Scatter
ScatterElements ScatterND Selu SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert
SequenceLength Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax SoftmaxCrossEntropyLoss Softplus Softsign
SpaceToDepth Split SplitToSequence Sqrt Squeeze StringConcat StringNormalizer StringSplit Sub Sum Tan Tanh
TensorScatter TfIdfVectorizer ThresholdedRelu Tile TopK Transpose Trilu Unique Unsqueeze Upsample Where Xor
""".split())

# ":white_check_mark: Partial support" in the README's "Supported layers" table of 1.29.24
PARTIAL = frozenset("Col2Im ConvInteger DeformConv DFT GridSample HammingWindow HannWindow ImageDecoder STFT "
                    "TfIdfVectorizer".split())

# Converted to TensorFlow string/regex ops, which TFLite has no builtin kernels for: the .tflite then needs the
# TensorFlow (Flex) delegate, which the ai-edge-litert interpreter does not include
NEEDS_FLEX = frozenset("RegexFullMatch StringConcat StringNormalizer StringSplit ImageDecoder".split())
