"""The demo recipe on the real ImageNet-trained EfficientNet-Lite0 and real photographs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from convertctl.data.images import preprocess
from convertctl.recipe import load_recipe

from .conftest import IMAGES, REPO, load_manifest, run_cli

pytestmark = pytest.mark.slow
RECIPE = REPO / "recipes" / "efficientnet_lite0.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "efficientnet_lite0"
    res = run_cli("run", RECIPE, "-o", out, latency=True)  # the demo times every artifact
    return out, res


def test_demo_succeeds(demo):
    out, res = demo
    assert res.code == 0, res.stderr
    m = load_manifest(out)
    assert m["status"] == "ok"
    assert m["samples"]["shapes"] == {"input": [91, 3, 224, 224]}  # the held-out split of 304 real photographs
    assert "91 held-out samples" in m["samples"]["description"]
    assert "ok in" in res.stderr and str(out) in res.stderr  # says where everything went


def test_export_matches_pytorch_on_real_images(demo):
    out, _ = demo
    export = load_manifest(out)["stages"][0]
    logits = export["verification"][0]["outputs"]["logits"]
    assert logits["shape"] == [91, 1000]
    assert logits["cosine"] > 0.99999 and logits["max_abs"] < 1e-3 and logits["top1_agreement"] == 1.0


def test_every_artifact_verified(demo):
    out, _ = demo
    arts = {a["id"]: a for a in load_manifest(out)["artifacts"]}
    assert set(arts) == {"openvino_fp32", "openvino_fp16", "openvino_int8", "onnxruntime_fp32", "onnxruntime_int8"}
    # (cosine, top-1 agreement) vs PyTorch on the 91 held-out views. INT8: the bar of 0.95 where the
    # artifact was built for a CPU with VNNI (full 8-bit weights, measured 0.978); without VNNI the INT8 kernels
    # saturate, convertctl builds 7-bit weights (ONNX Runtime reduce_range, NNCF overflow fix), which costs
    # agreement (measured 0.923 / 0.945 on an AVX2-only EPYC): the recipe's gate of 0.90 is what holds there.
    bars = {"fp32": (0.99999, 1.0), "fp16": (0.9995, 0.97), "int8": (0.99, 0.90)}
    ort_form = arts["onnxruntime_int8"]["settings"]["int8_form"]
    ov_fix = arts["openvino_int8"]["settings"]["overflow_fix"]
    vnni_build = {"onnxruntime_int8": ort_form == "u8s8", "openvino_int8": ov_fix == "disable"}
    assert (ort_form, ov_fix) in (("u8s8", "disable"), ("u8s8_reduce_range", "enable"))  # one CPU, one choice
    for art in arts.values():
        assert art["status"] == "ok"
        logits = art["verification"][0]["outputs"]["logits"]
        assert art["verification"][0]["against"] == "pytorch"
        cosine, agreement = bars[art["precision"]]
        if vnni_build.get(art["id"]):
            agreement = 0.95
        assert logits["cosine"] > cosine and logits["top1_agreement"] >= agreement, art["id"]
    assert arts["onnxruntime_int8"]["built_from"] == "qdq_u8s8"
    assert arts["openvino_int8"]["settings"]["weights"] == "int8 (nncf)"
    excluded = ["node_Conv_882", "node_Conv_881", "node_Conv_883", "node_Conv_805", "node_Conv_800", "node_Conv_855"]
    assert len(arts["openvino_int8"]["settings"]["ignored_scope"]["names"]) == len(excluded)
    quant = next(s for s in load_manifest(out)["stages"] if s["name"] == "quantize")
    assert quant["details"]["qdq_u8s8"]["excluded_nodes"] == sorted(excluded)
    int8_bin = (out / "targets" / "openvino_int8" / "model.bin").stat().st_size
    assert arts["openvino_fp32"]["effective"]["inference_precision"] == "f32"
    fp16_bin = (out / "targets" / "openvino_fp16" / "model.bin").stat().st_size
    fp32_bin = (out / "targets" / "openvino_fp32" / "model.bin").stat().st_size
    assert 0.45 < fp16_bin / fp32_bin < 0.55
    assert int8_bin / fp32_bin < 0.35  # INT8 weights


def test_exported_model_recognises_real_photographs(demo):
    out, _ = demo
    pre = load_recipe(RECIPE)[0].samples.preprocess
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    # ImageNet-1k ids: 967 espresso; 281-285 domestic cats; 657 missile, 812 space shuttle
    # 1 goldfish, 207 golden retriever, 400 academic gown / 652 military uniform (Grace Hopper)
    expected = {"coffee_00.png": {967}, "chelsea_00.png": {281, 282, 283, 284, 285}, "rocket_00.png": {657, 744, 812},
                "gold_fish_00.png": {1}, "puppy_00.png": {207}, "grace_hopper_00.png": {400, 652}}
    for name, classes in expected.items():
        x = preprocess(IMAGES / name, pre)[None]
        (logits,) = sess.run(None, {"input": x})
        top5 = set(np.argsort(logits[0])[-5:].tolist())
        assert top5 & classes, (name, sorted(top5))


def test_manifest_records_versions_and_recipe(demo):
    out, _ = demo
    m = load_manifest(out)
    pk = m["environment"]["packages"]
    assert pk["torch"].startswith("2.13.0") and "openvino" in pk and "onnxruntime" in pk
    assert m["recipe"]["content"]["name"] == "efficientnet_lite0" and len(m["recipe"]["sha256"]) == 64
    assert m["stages"][0]["details"]["exporter"] == "dynamo"
    json.dumps(m)  # plain JSON throughout
