"""The demo recipe's work written by hand in one plain script: the baseline for convertctl's overhead.

Same model, same 16 preprocessed images, same library calls, same artifacts, each checked against
PyTorch; no child process, no manifest, no report. Prints one JSON line with per-stage seconds.
    python benchmarks/hand_pipeline.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent


def preprocess(path: Path):
    import numpy as np
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)
    return ((x - 127) / 128).transpose(2, 0, 1)


def check(ref, out) -> dict:
    import numpy as np

    a, b = ref.ravel().astype(np.float64), out.ravel().astype(np.float64)
    return {
        "cosine": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 7),
        "max_abs": float(np.abs(a - b).max()),
        "top1_agreement": float((ref.argmax(1) == out.argmax(1)).mean()),
    }


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    seconds, parity = {}, {}
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        seconds[name] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()

    # samples: the same 16 real images convertctl picks (sorted list, permutation with seed 0)
    import numpy as np

    files = sorted(p for p in (ROOT / "calib_data" / "images").iterdir() if p.suffix.lower() == ".png")
    order = np.random.default_rng(0).permutation(len(files))[:16]
    x = np.ascontiguousarray(np.stack([preprocess(files[i]) for i in order]), dtype=np.float32)
    lap("samples")

    # export: model from the factory, PyTorch reference, dynamo export with a dynamic batch
    import torch

    sys.path.insert(0, str(ROOT / "recipes" / "models"))
    from efficientnet_lite0 import build

    model = build().eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    onnx_path = out / "model.onnx"
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        str(onnx_path),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=16)},),
    )
    lap("export")

    import onnx

    onnx.checker.check_model(str(onnx_path))
    lap("check")

    import onnxslim

    slim_path = out / "model.slim.onnx"
    onnx.save(onnxslim.slim(onnx.load(str(onnx_path))), str(slim_path))
    lap("optimize")

    import openvino as ov

    core = ov.Core()
    for name, fp16 in (("openvino_fp32", False), ("openvino_fp16", True)):
        xml = out / name / "model.xml"
        ov.save_model(ov.convert_model(str(slim_path)), str(xml), compress_to_fp16=fp16)
        compiled = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        parity[name] = check(ref, compiled.create_infer_request().infer({"input": x})[compiled.output(0)])
        lap(f"build {name}")

    import onnxruntime as ort

    sess = ort.InferenceSession(str(slim_path), providers=["CPUExecutionProvider"])
    parity["onnxruntime_fp32"] = check(ref, sess.run(None, {"input": x})[0])
    lap("build onnxruntime_fp32")
    return {
        "seconds": seconds,
        "in_script_total": round(time.perf_counter() - T_START, 3),
        "parity": parity,
        "input_sha256": _feeds_sha256(x),
    }


def _feeds_sha256(x) -> str:
    """Same hash as convertctl's samples record, to prove both pipelines saw identical inputs."""
    import hashlib

    h = hashlib.sha256(f"input|{x.dtype}|{x.shape}".encode())
    h.update(x.tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
