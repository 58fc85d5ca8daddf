"""Test-build a `tensorrt` build kit with TensorRT-RTX, where TensorRT itself is missing and TensorRT-RTX is here.

The kit's own ONNX is parsed and built with the kit's own profile and builder options, by the builder shared with
the `tensorrt` target (targets/tensorrt/builder.py), so a kit that TensorRT's ONNX parser lineage refuses, or that
the builder cannot build, is known at the run and not on the GPU machine. The engine is discarded: it was built by
TensorRT-RTX, not by the TensorRT 10/11 the kit is for, and the kit's commands build the real one. What this
proves and what it does not is said in every record ("TensorRT 10/11 itself not run"): the two products share the
parser lineage, not every operator.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from convertctl.targets.base import KitTestBuild

NOT_TENSORRT = "TensorRT 10/11 itself not run"


def test_build_kit(folder: Path, settings: dict, spec) -> KitTestBuild:
    """Parse and build folder/model.onnx (the kit's ONNX) with the kit's profiles (settings["profiles"]); write
    test_build.json and test_build.log into the kit folder."""
    from convertctl.errors import ConvertctlError, require
    from convertctl.targets.tensorrt.builder import EngineBuildError, building, describe_network, serialize
    from convertctl.targets.tensorrt.profiles import Profiles
    from convertctl.targets.tensorrt_rtx.builder import RTX
    from convertctl.targets.tensorrt_rtx.options import TensorRTRTXOptions

    trt = require(RTX.module, RTX.extra)
    version = str(trt.__version__)
    by = f"{RTX.title} {version}"
    short = ".".join(version.split(".")[:3])
    graph = settings.get("graph_precision", "fp32")
    options = TensorRTRTXOptions(runtime="tensorrt_rtx", tf32=spec.tf32, workspace_mib=spec.workspace_mib,
                                 builder_optimization_level=spec.builder_optimization_level)
    details: dict = {"by": by, "onnx": "model.onnx", "graph_precision": graph, "network": "strongly typed",
                     "profiles": settings.get("profiles"), "engine": "discarded (built by TensorRT-RTX, not by the "
                     "TensorRT the kit is for)", "not_run": NOT_TENSORRT}
    if not getattr(spec, "strongly_typed", True):  # TensorRT-RTX builds strongly typed networks only
        details["note"] = ("the kit is weakly typed (TensorRT 10.x precision flags); TensorRT-RTX built its ONNX "
                           "strongly typed, so the precision flags were not tried")
    log = [f"{by}: test build of the tensorrt build kit in {folder.name}/ ({NOT_TENSORRT})"]
    scratch = Path(tempfile.mkdtemp(prefix="convertctl-kit-test-"))  # build.log lands here, not in the kit
    try:
        profiles = Profiles.from_dict(settings["profiles"])
        with building(trt, RTX, folder / "model.onnx", options, profiles, graph.startswith("int8"), scratch,
                      log) as b:
            plan, seconds = serialize(b)
            network = describe_network(b, profiles)
        details.update(result="parses and builds", build_seconds=seconds, engine_bytes=len(plan),
                       layer_count=network["layer_count"], layer_output_types=network["layer_output_types"])
        summary = f"parses and builds with TensorRT-RTX {short}; {NOT_TENSORRT}"
        ok = True
    except EngineBuildError as exc:
        details.update(result=f"{exc.stage} failed", message=exc.message, nodes=list(exc.nodes))
        summary = f"the build kit does not build with TensorRT-RTX {short} ({NOT_TENSORRT}): {exc.message}"
        ok = False
    except ConvertctlError as exc:  # the kit's profile does not fit its ONNX
        details.update(result="refused before the build", message=exc.message)
        summary = f"the build kit does not build with TensorRT-RTX {short} ({NOT_TENSORRT}): {exc.message}"
        ok = False
    finally:
        written = scratch / "build.log"
        if written.is_file():
            shutil.copyfile(written, folder / "test_build.log")
        shutil.rmtree(scratch, ignore_errors=True)
    details["log"] = "test_build.log"
    (folder / "test_build.json").write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
    return KitTestBuild(by=by, ok=ok, summary=summary, details=details,
                        files=[Path("test_build.json"), Path("test_build.log")])
