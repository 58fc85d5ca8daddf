"""Write quantize/model.qdq_s8.onnx into a `convertctl run` folder that has no S8 Q/DQ model.

The quantize stage writes only the emissions its targets need; the demo recipe's targets need U8S8 only
(ONNX Runtime INT8; OpenVINO INT8 goes through NNCF). The latency benchmark also times the S8 Q/DQ form
(TensorRT's), so this emits it the way the quantize stage would: convertctl's own `emit_qdq`, from the
run's optimized FP32 ONNX and the run's calibration table. Prints one JSON line.

    python benchmarks/emit_qdq_s8.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(run_dir: Path) -> dict:
    from convertctl.quantize.emit import emit_qdq
    from convertctl.quantize.table import CalibrationTable

    q = run_dir / "quantize"
    meta = json.loads((q / "calibration.meta.json").read_text())
    table = CalibrationTable(q / "calibration.json", meta, reused=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    details = next(s for s in manifest["stages"] if s["name"] == "quantize")["details"]
    t0 = time.perf_counter()
    info = emit_qdq(
        run_dir / "optimize" / "model.onnx",
        table,
        q / "model.qdq_s8.onnx",
        "qdq_s8",
        exclude_ops=details["qdq_u8s8"]["excluded_ops"],  # the same exclusions as the run's U8S8 model
        exclude_nodes=details["qdq_u8s8"]["excluded_nodes"],
    )
    return {**info, "seconds": round(time.perf_counter() - t0, 3), "calibration": meta}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
