"""The child process that runs MNN's native converter or quantizer: `python -m convertctl.targets.mnn.worker REQ.json`.

It imports the wheel's compiled `_tools` module and nothing else of MNN: never `MNN.tools` (its `__init__` imports
`MNN.tools.utils.log`, which runs `pip install aliyun-log-python-sdk` and then uploads the machine id and the tool's
arguments to Alibaba's log service). Its stdout/stderr (MNN's own messages, "The device supports: ...") go to the
log file the parent gave it. A native abort kills only this process; the parent reads the log.

Request: {"tool": "convert" | "quant", "argv": [...]} -> writes REQ.result.json: {"returned": ..., "modules": [the
MNN/aliyun modules this process imported], "seconds": ...}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    req_path = Path(sys.argv[1])
    request = json.loads(req_path.read_text())
    import _tools  # the wheel's native converter (tools/converter, pymnn/src/MNNTools.cc)

    t0 = time.perf_counter()
    if request["tool"] == "convert":
        returned = _tools.mnnconvert(list(request["argv"]))  # MNNConvert's argv; True even when it failed
    elif request["tool"] == "quant":
        # quant_main(argc, argv): a list, [prog, src.mnn, dst.mnn, config.json]. (The wheel's Python wrapper
        # passes three strings instead, which aborts natively with std::length_error.)
        returned = _tools.mnnquant(list(request["argv"]))
    else:
        raise SystemExit(f"unknown tool {request['tool']!r}")
    sys.stdout.flush()
    seconds = time.perf_counter() - t0
    modules = sorted(m for m in sys.modules if m.split(".")[0] in ("MNN", "aliyun", "_tools", "_mnncengine"))
    result = {"returned": bool(returned), "modules": modules, "seconds": round(seconds, 3)}
    req_path.with_name(req_path.name.replace(".request.json", ".result.json")).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
