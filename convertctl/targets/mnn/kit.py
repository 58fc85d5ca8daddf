"""README.md beside model.mnn: what it is and the exact commands that reproduce it, with MNN's C++ tools or with the
wheel's native module (never the wheel's `mnnconvert`/`mnnquant` scripts: they import MNN/tools/utils/log.py, which
pip-installs Alibaba's log SDK and uploads the machine id and arguments)."""

from __future__ import annotations

import os
from pathlib import Path


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)


# the step after the quantizer when the build moved INT8 MaxPools to float (maxpool.py): the same code, same bytes
MAXPOOL_STEP = "python -m convertctl.targets.mnn.maxpool model.mnn"


def write_readme(out_dir: Path, onnx_path: Path, spec, settings: dict) -> None:
    onnx = _rel(onnx_path, out_dir)
    int8 = spec.precision == "int8"
    pools = (settings.get("maxpool_in_float") or {}).get("layers") or []
    patch = [MAXPOOL_STEP] if int8 and pools else []
    first = "model.float.mnn" if int8 else "model.mnn"
    argv = ["-f", "ONNX", "--modelFile", onnx, "--MNNModel", first, "--bizCode", "convertctl"]
    if spec.precision == "fp16":
        argv.append("--fp16")
    py_argv = ", ".join(repr(a) for a in ["MNNConvert", *argv])
    lines = [
        f"# {out_dir.name}: MNN {spec.precision}", "",
        f"`model.mnn`: {settings['weights']}; run it with `runtime.json` (CPU backend, precision mode "
        f"`{spec.runtime_precision}`, the threads it names; null = the CPUs available, at most 4).", "",
        "## Reproduce", "",
        "From this folder, with MNN's C++ tools (built with -DMNN_BUILD_CONVERTER=ON -DMNN_BUILD_QUANTOOLS=ON):", "",
        "```sh", "MNNConvert " + " ".join(argv)]
    if int8:
        lines += ["quantized.out model.float.mnn model.mnn quant.json", *patch]
    lines += ["```", "", "or with the `mnn` wheel's native module (not its `mnnconvert`/`mnnquant` scripts, which "
              "upload the machine id and arguments to Alibaba's log service):", "", "```sh",
              f"python -c \"import _tools; _tools.mnnconvert([{py_argv}])\""]
    if int8:
        lines += ["python -c \"import _tools; _tools.mnnquant(['quantized.out', 'model.float.mnn', 'model.mnn', "
                  "'quant.json'])\"", *patch]
    lines += ["```", ""]
    if patch:
        many = len(pools) > 1
        lines += [f"The third step (convertctl's own `targets/mnn/maxpool.py`; `-o <file>` writes a copy instead of "
                  f"patching in place) sets the output scale of the INT8 MaxPool{'s' * many} "
                  f"{', '.join(f'`{p}`' for p in pools)} 0.01 % above {'their' if many else 'its'} input's so that MNN "
                  f"runs {'them' if many else 'it'} in float: MNN 3.6.1's x86 INT8 MaxPool compares its uint8-stored "
                  "values as signed int8 and is wrong where a window holds both signs (docs/mnn.md). Without it the "
                  "model is not the one convertctl shipped and verified.", ""]
    if int8:
        lines += [f"`quant.json` reads the calibration samples from `calibration/` ({settings.get('calibration_samples')}"
                  " folders, one per sample: `<input>.txt` with the values as text and `input.json` with the shapes). "
                  "convertctl wrote them from the run's calibration data and removed them after quantizing; "
                  "`layers.json` is MNN's per-tensor cosine of the INT8 model against the float one on them.", ""]
    (out_dir / "README.md").write_text("\n".join(lines))
