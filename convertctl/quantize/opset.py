"""Upgrade a model below opset 13 before Q/DQ emission, verified and recorded.

Per-channel QuantizeLinear/DequantizeLinear (the `axis` attribute the INT8 weights need) exist from opset 13 on;
ONNX Runtime's quantizer writes them into an opset 11 or 12 model anyway, which no runtime then loads
("Unrecognized attribute: axis"). Exporters still default to 11 or 12 (paddle2onnx, older torch and tf2onnx), so
such a model is upgraded with ONNX's version converter to QDQ_OPSET, the lowest opset the Q/DQ emissions need, and
every Q/DQ emission is made from the upgraded model. The upgrade must not change the model: both are run in ONNX
Runtime on the verification samples and compared (max|Δ|, cosine) within the FP32 tolerance. A model the converter
cannot upgrade, or whose upgrade changes its outputs, is refused (UsageError, exit 2) with what to do instead:
export it again at opset 13 or newer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, UsageError, require
from convertctl.onnx_save import check_file

QDQ_OPSET = 13
_REEXPORT = ("export the model again at opset 13 or newer (torch.onnx.export(..., opset_version=13), "
             "paddle2onnx --opset_version 13, python -m tf2onnx.convert --opset 13), then quantize that")


@dataclass
class OpsetUpgrade:
    path: Path  # the upgraded model (in the quantize folder)
    comparison: object  # report.manifest.Comparison: upgraded vs original, judged by the FP32 tolerance
    details: dict  # what the manifest keeps (stages[quantize].details.opset_upgrade)

    @property
    def finding(self) -> str:
        d = self.details
        return (f"opset {d['from_opset']} -> {d['to_opset']} (ONNX version converter; per-channel Q/DQ needs opset "
                f"{QDQ_OPSET}): vs the opset {d['from_opset']} model on {d['samples']} samples max|Δ| "
                f"{d['max_abs']:.2g}, cosine {d['cosine']:.6f}")


def default_opset(model) -> int:
    """The model's ai.onnx opset (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_for_qdq(fp32: Path, folder: Path, feeds: dict[str, np.ndarray], chunk: int | None, tolerance,
                    target: int = QDQ_OPSET) -> OpsetUpgrade | None:
    """None when `fp32` is at opset `target` or newer (or imports no ai.onnx opset); else the model upgraded to
    `target`, written to `folder`/model.opset<target>.onnx, checked and compared with `fp32` on `feeds`."""
    onnx = require("onnx", "onnx")
    from onnx import version_converter

    from convertctl.data.batching import axes_of, sample_count
    from convertctl.evaluate.compare import compare
    from convertctl.model import external_data_files, load_proto
    from convertctl.onnx_session import load_error, session
    from convertctl.quantize.batches import run_session

    header = load_proto(fp32)
    source = default_opset(header)
    if source == 0 or source >= target:
        return None
    name = Path(fp32).name
    why = f"{name} is at opset {source}; INT8 (per-channel Q/DQ) needs opset {target} or newer"
    external = bool(external_data_files(fp32, header))
    model = load_proto(fp32, with_weights=True)
    try:
        upgraded = version_converter.convert_version(model, target)
    except Exception as exc:  # the converter's C++ errors (ConvertError, RuntimeError, ...) and protobuf limits
        raise UsageError(f"{why}, and ONNX's version converter cannot upgrade it: {_first_line(exc)}",
                         hint=_REEXPORT) from None
    del model
    upgraded.ir_version = max(upgraded.ir_version, onnx.helper.find_min_ir_version_for(
        [onnx.helper.make_opsetid("", target)]))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"model.opset{target}.onnx"
    _save(onnx, upgraded, out, external)
    del upgraded
    try:
        check_file(out)  # ONNX's full checker, by path: external weights and models over 2 GB are checked too
    except ConvertctlError as exc:  # the version converter's output, not convertctl's: the user re-exports
        reason = " ".join(str(exc.__cause__ or exc.message).split())[:300]  # the checker's message, on one line
        for path in (out, Path(f"{out}.data")):  # an invalid model is never left where a stage would pick it up
            path.unlink(missing_ok=True)
        raise UsageError(f"{why}; ONNX's version converter upgraded it to an invalid model: {reason}",
                         hint=_REEXPORT) from None
    try:
        before = run_session(session(fp32), feeds, chunk)
        upgraded_session = session(out)
    except Exception as exc:
        raise UsageError(f"{why}; ONNX Runtime cannot load the model the version converter made: "
                         f"{load_error(exc)}", hint=_REEXPORT) from None
    output_names = [o.name for o in upgraded_session.get_outputs()]
    after = run_session(upgraded_session, feeds, chunk)
    cmp = compare(f"opset {source} onnx (before the opset upgrade)", output_names, before, after, tolerance)
    worst_abs = max((m.max_abs for m in cmp.outputs.values() if m.max_abs is not None), default=0.0)
    worst_cos = min((m.cosine for m in cmp.outputs.values() if m.cosine is not None), default=1.0)
    if cmp.passed is False:
        raise UsageError(f"{why}; upgraded to opset {target} by ONNX's version converter, its outputs differ from "
                         f"the opset {source} model's beyond the FP32 tolerance ({'; '.join(cmp.failures[:3])})",
                         hint=_REEXPORT)
    samples = sample_count(feeds, axes_of(chunk)) if feeds else 0
    details = {"from_opset": source, "to_opset": target, "converter": f"onnx.version_converter (onnx {onnx.__version__})",
               "model": out.name, "samples": samples, "max_abs": worst_abs, "cosine": worst_cos,
               "passed": cmp.passed is not False}
    return OpsetUpgrade(path=out, comparison=cmp, details=details)


def _save(onnx, model, out: Path, external: bool) -> None:
    """Weights stay inline, or beside the model in one file when the source kept them outside."""
    if external:
        Path(f"{out}.data").unlink(missing_ok=True)  # onnx appends to an existing data file
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{out.name}.data", size_threshold=0)
    else:
        onnx.save_model(model, str(out))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
