"""INT8/FP16 artifacts that are slower or larger than their FP32 counterpart are flagged (evaluate/worth.py),
and never for jitter within the measurements' own noise."""

from __future__ import annotations

from convertctl.evaluate.worth import worth_findings
from convertctl.report.manifest import ArtifactRecord, FileRecord, LatencyRecord


def _artifact(id_, runtime, precision, mb, p50, p90=None):
    files = [FileRecord(path=f"targets/{id_}/model.onnx", sha256="0" * 64, bytes=int(mb * 1e6)),
             FileRecord(path=f"targets/{id_}/session.json", sha256="0" * 64, bytes=10_000_000)]  # not the model
    latency = LatencyRecord(status="measured", of=id_, p50_ms=p50, p90_ms=p90 or p50 * 1.05)
    return ArtifactRecord(id=id_, runtime=runtime, precision=precision, status="ok", files=files, latency=latency)


def test_an_int8_artifact_slower_and_larger_than_its_fp32_twin_is_flagged_with_both_numbers():
    fp32 = _artifact("ort_fp32", "onnxruntime", "fp32", 4.0, 1.00)
    int8 = _artifact("ort_int8", "onnxruntime", "int8", 4.5, 1.60)
    lines = worth_findings([fp32, int8])
    assert lines == ["ort_int8 is larger than ort_fp32: 4.50 MB vs 4.00 MB",
                     "ort_int8 is slower than ort_fp32: p50 1.6 ms vs 1 ms (0.62x), beyond both measurements' noise"]


def test_a_faster_smaller_int8_and_jitter_within_noise_are_not_flagged():
    fp32 = _artifact("ov_fp32", "openvino", "fp32", 4.0, 1.00, p90=1.30)  # 30 % noise
    int8 = _artifact("ov_int8", "openvino", "int8", 1.1, 1.20)  # 20 % slower: within that noise
    assert worth_findings([fp32, int8]) == []
    assert worth_findings([fp32, _artifact("ov_int8", "openvino", "int8", 1.1, 0.5)]) == []


def test_without_an_fp32_twin_the_fp32_onnx_and_the_baseline_are_the_counterpart():
    fp16 = _artifact("ort_fp16", "onnxruntime", "fp16", 2.0, 3.0)
    baseline = LatencyRecord(status="measured", of="onnx fp32 (onnxruntime)", p50_ms=1.0, p90_ms=1.1)
    lines = worth_findings([fp16], baseline, fp32_onnx_bytes=4_000_000)
    assert lines == ["ort_fp16 is slower than the baseline (onnx fp32 (onnxruntime)): p50 3 ms vs 1 ms (0.33x), "
                     "beyond both measurements' noise"]
    assert worth_findings([fp16], baseline, fp32_onnx_bytes=1_000_000)[0] == \
        "ort_fp16 is larger than the FP32 ONNX: 2.00 MB vs 1.00 MB"


def test_artifacts_that_did_not_run_or_were_not_timed_are_left_out():
    fp32 = _artifact("ort_fp32", "onnxruntime", "fp32", 4.0, 1.0)
    broken = _artifact("ort_int8", "onnxruntime", "int8", 9.0, 9.0)
    broken.status = "error"
    untimed = _artifact("ov_int8", "openvino", "int8", 1.0, 1.0)
    untimed.latency = LatencyRecord(status="skipped", of="ov_int8")
    assert worth_findings([fp32, broken, untimed], None, 4_000_000) == []


def test_engines_built_where_they_cannot_run_are_compared_by_size_with_their_fp32_twin():
    """TensorRT-RTX engines without a GPU are "skipped" (built, not run) or "failed" (their ONNX failed the gate):
    measured on the corpus, mtcnn_pnet's int8 engine was compared with the 0.03 MB ONNX instead of the fp32 engine,
    and fer_emotion's int8 engine, 6.4x its fp32 one, was not flagged at all."""
    def engine(id_, precision, mb, status):
        files = [FileRecord(path=f"targets/{id_}/model.engine", sha256="0" * 64, bytes=int(mb * 1e6))]
        return ArtifactRecord(id=id_, runtime="tensorrt_rtx", precision=precision, status=status, files=files,
                              reason="built; not run: no supported GPU")

    fp32, int8 = engine("rtx_fp32", "fp32", 0.57, "skipped"), engine("rtx_int8", "int8", 3.64, "skipped")
    assert worth_findings([fp32, int8], None, 30_000) == ["rtx_int8 is larger than rtx_fp32: 3.64 MB vs 0.57 MB"]
    failed = engine("rtx_int8", "int8", 1.21, "failed")
    assert worth_findings([engine("rtx_fp32", "fp32", 1.00, "skipped"), failed], None, 30_000) == [
        "rtx_int8 is larger than rtx_fp32: 1.21 MB vs 1.00 MB"]
    assert worth_findings([engine("rtx_fp32", "fp32", 1.0, "skipped"), engine("rtx_fp16", "fp16", 0.6, "skipped")],
                          None, 30_000) == []


def test_edge_artifacts_count_their_own_model_files():
    """MNN's .mnn, LiteRT's .tflite and ncnn's .param + .bin are the models (measured on the corpus: an MNN INT8 6x
    slower than its FP32 had no finding, because .mnn was not counted as a model file)."""
    def art(id_, runtime, precision, files, p50):
        records = [FileRecord(path=f"targets/{id_}/{n}", sha256="0" * 64, bytes=b) for n, b in files]
        latency = LatencyRecord(status="measured", of=id_, p50_ms=p50, p90_ms=p50 * 1.05)
        return ArtifactRecord(id=id_, runtime=runtime, precision=precision, status="ok", files=records,
                              latency=latency)

    lines = worth_findings([art("mnn_fp32", "mnn", "fp32", [("model.mnn", 6_700_000)], 4.0),
                            art("mnn_int8", "mnn", "int8", [("model.mnn", 1_900_000)], 11.9),
                            art("litert_fp32", "litert", "fp32", [("model.tflite", 1_000_000)], 1.0),
                            art("litert_fp16", "litert", "fp16", [("model.tflite", 1_200_000)], 1.0),
                            art("ncnn_fp32", "ncnn", "fp32", [("model.ncnn.param", 90_000), ("model.ncnn.bin", 10)], 1.0),
                            art("ncnn_fp16", "ncnn", "fp16", [("model.ncnn.param", 90_000), ("model.ncnn.bin", 5)], 1.0)])
    assert lines == ["mnn_int8 is slower than mnn_fp32: p50 11.9 ms vs 4 ms (0.34x), beyond both measurements' noise",
                     "litert_fp16 is larger than litert_fp32: 1.20 MB vs 1.00 MB"]


def _int8(id_, runtime, built_from, status, cosine):
    from convertctl.report.manifest import Comparison, OutputMetrics

    gate = Comparison(against="onnxruntime (source model)", outputs={"y": OutputMetrics(shape=[4, 3], cosine=cosine)})
    return ArtifactRecord(id=id_, runtime=runtime, precision="int8", status=status, built_from=built_from,
                          verification=[gate])


def test_an_nncf_int8_that_failed_where_the_qdq_model_passed_is_pointed_at_int8_method_qdq():
    """Magika: NNCF 0.72 (it quantizes the decomposed GELU/LayerNorm arithmetic), the Q/DQ model 0.9985."""
    from convertctl.evaluate.int8_methods import int8_method_advice

    ort = _int8("onnxruntime_int8", "onnxruntime", "qdq_u8s8", "ok", 0.9985)
    ov = _int8("openvino_int8", "openvino", "fp32", "failed", 0.7214)
    assert int8_method_advice([ort, ov]) == [
        "openvino_int8: NNCF's INT8 failed its gate where the Q/DQ model of onnxruntime_int8 passed (worst cosine "
        "0.7214 vs 0.9985); `int8_method: qdq` on openvino_int8 builds OpenVINO's INT8 from that model"]
    # nothing to advise: the Q/DQ model failed too, NNCF passed, or the failed OpenVINO target is already Q/DQ
    assert int8_method_advice([_int8("a", "onnxruntime", "qdq_u8s8", "failed", 0.97), ov]) == []
    assert int8_method_advice([ort, _int8("b", "openvino", "fp32", "ok", 0.995)]) == []
    assert int8_method_advice([ort, _int8("c", "openvino", "qdq_s8", "failed", 0.98)]) == []
