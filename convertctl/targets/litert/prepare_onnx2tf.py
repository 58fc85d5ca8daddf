"""Prepares a folder for an onnx2tf-built litert artifact's command (kit.json `command`), from the run's output
folder, so the conversion can be rerun without convertctl:

    python prepare_onnx2tf.py            # in targets/<artifact>/ of the run's output folder
    cd onnx2tf_kit && <kit.json's command>

It writes into --out (default onnx2tf_kit/ beside this file):
- model.onnx: the run's ONNX (--model, default the output folder's top-level model.onnx) with node names TensorFlow
  cannot take as scope names renamed (tf_safe_names) and its dynamic input dims fixed as convertctl fixed them
  before converting (SETTINGS["static"]; a dim_value <= 0 counts as dynamic), output and intermediate shapes cleared
  for onnx2tf's own inference (fix_shapes): the code convertctl itself ran;
- onnx2tf's sample-image file (seeded random images, as convertctl wrote them), so onnx2tf downloads nothing;
- for an int8 artifact, calibration/<input>.npy, what the command's -cind reads, from the run's samples.npz (--samples):
  the run's verification samples (the calibration data's held-out split, else the recipe's `samples`), not the
  calibration samples the build used (those are not in the output folder): the int8 model it gives is calibrated on
  other data than the shipped one and may differ from it in its quantization scales.

Needs numpy and onnx (the onnx2tf environment has both). convertctl's litert build imports fix_shapes and
write_sample_images from this file and ships it with SETTINGS filled in for the artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np

SETTINGS: dict = {}  # filled in by convertctl for the artifact (static, calibration, onnx_sha256)

# onnx2tf loads this file from its working folder for its test inference and INT8 default calibration, and downloads
# it from GitHub when it is not there (common_functions.py download_test_image_data)
SAMPLE_IMAGES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def dynamic(dim) -> bool:
    """An ONNX dim whose size is not fixed: a dim_param, no value at all, or a dim_value <= 0 (Paddle2ONNX writes
    a dynamic batch as dim_value -1)."""
    return not dim.HasField("dim_value") or dim.dim_value <= 0


def fix_shapes(model, static: dict[str, list[int]]) -> None:
    """The model's dynamic input dims set to `static` (input name -> its static shape), in place; output and
    intermediate shapes cleared for onnx2tf's own inference to fill in."""
    for value in model.graph.input:
        for dim, size in zip(value.type.tensor_type.shape.dim, static.get(value.name, []), strict=False):
            if dynamic(dim):
                dim.Clear()
                dim.dim_value = int(size)
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dynamic(dim):
                dim.Clear()
    del model.graph.value_info[:]


_SCOPE = re.compile(r"[^A-Za-z0-9_./>-]")


def tf_safe_names(model) -> dict[str, str]:
    """Node names TensorFlow cannot take as a scope name (onnx2tf names its ops after them; Paddle2ONNX writes
    `Softmax@0`, which onnx2tf refuses: "'Softmax@0' is not a valid scope name") renamed in place, other characters
    as `_`, kept unique; {new name: old name}."""
    taken = {n.name for n in model.graph.node}
    renamed = {}
    for node in model.graph.node:
        if node.name and _SCOPE.search(node.name):
            base = new = _SCOPE.sub("_", node.name)
            k = 1
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            taken.add(new)
            renamed[new] = node.name
            node.name = new
    return renamed


def write_sample_images(folder: Path) -> None:
    np.save(Path(folder) / SAMPLE_IMAGES, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))


def calibration_arrays(samples: dict[str, np.ndarray], calibration: dict[str, dict]) -> dict[str, np.ndarray]:
    """-cind's arrays from samples stacked along each input's batch axis (samples.npz): per input, the samples along
    axis 0 in the .tflite's layout (`perm`), float32. An unbatched input (batch_axis null, the same tensor every run,
    size 1 on axis 0) is repeated once per sample."""
    batched = [len(samples[n]) for n, c in calibration.items() if c["batch_axis"] is not None]
    count = min(batched) if batched else 1
    out = {}
    for name, c in calibration.items():
        x = np.asarray(samples[name])
        x = np.repeat(x, count, axis=0) if c["batch_axis"] is None else x[:count]
        if c.get("perm"):
            x = np.transpose(x, c["perm"])
        out[name] = np.ascontiguousarray(x.astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    run = here.parent.parent  # targets/<artifact>/ sits two levels below the run's output folder
    parser = argparse.ArgumentParser(description="Prepare a folder for this artifact's onnx2tf command (kit.json).")
    parser.add_argument("--model", type=Path, default=run / "model.onnx", help="the run's ONNX (default: %(default)s)")
    parser.add_argument("--samples", type=Path, default=run / "samples.npz",
                        help="the run's samples, for an int8 artifact's calibration files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=here / "onnx2tf_kit", help="the folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    import onnx

    with open(args.model, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    if SETTINGS.get("onnx_sha256") and sha != SETTINGS["onnx_sha256"]:
        print(f"warning: {args.model} is not the ONNX convertctl converted (sha256 {sha[:16]}..., "
              f"expected {SETTINGS['onnx_sha256'][:16]}...)")
    args.out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(args.model), load_external_data=False)
    tf_safe_names(model)
    fix_shapes(model, SETTINGS.get("static", {}))
    onnx.save(model, str(args.out / "model.onnx"))
    for tensor in model.graph.initializer:  # external data stays in its files: copied beside the copy
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location and not (args.out / location).exists():
            (args.out / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.model.parent / location, args.out / location)
    write_sample_images(args.out)
    if SETTINGS.get("calibration"):
        with np.load(args.samples) as npz:
            arrays = calibration_arrays({k: npz[k] for k in npz.files}, SETTINGS["calibration"])
        for name, x in arrays.items():
            path = args.out / SETTINGS["calibration"][name]["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, x)
        print(f"calibration: {len(next(iter(arrays.values())))} samples from {args.samples} (the run's "
              "verification samples, not the build's calibration samples)")
    print(f"prepared {args.out}: run kit.json's command there")


if __name__ == "__main__":
    main()
