"""A target is one package: everything about a runtime lives in convertctl/targets/<name>/.

What "mentions" means here. Every .py file of convertctl/ outside the target's package is tokenized; its NAME
tokens (identifiers, module paths) and STRING tokens (messages, help texts, keys, import strings) are searched,
case-insensitively, for the target's words:
- tensorrt: `tensorrt` and `trtexec` anywhere in a token (no other word contains them: TensorRTOptions counts),
  `trt` as a word of its own (`convertctl.trt`, `trt_version`, `TrtRunner`; not inside `ctrtl`-like words);
- openvino: `openvino` and `nncf` anywhere in a token. Not `ov`-prefixed names (`ov_`, `cov`, `overflow`):
  too broad to mean OpenVINO.
Comments may name targets, and so may docstrings outside convertctl/cli/: both are prose that explains what
the core does for which runtime (why INT8 saturates on some CPUs, where a cache comes from) and never has to
change when a target is added. In convertctl/cli/ a command's docstring is its --help, so it is searched too.

onnxruntime is exempt: ONNX Runtime is also the core's reference executor (convertctl/onnx_session.py: export
verification, the optimize guard, the quantizer and its calibration, a kit's judging, the latency baseline),
so the core names it by design; the onnxruntime target package only builds and opens its artifact with it.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import tomllib

from convertctl.targets import registry

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "convertctl"

WORDS = {
    "tensorrt": re.compile(r"(?i)tensorrt|trtexec|(?<![a-z0-9])trt(?![a-z0-9])|(?<![A-Za-z])Trt(?=[A-Z])"),
    "tensorrt_rtx": re.compile(r"(?i)tensorrt[_-]?rtx|(?<![a-z0-9])trt_?rtx"),
    "openvino": re.compile(r"(?i)openvino|nncf"),
    "mnn": re.compile(r"(?i)(?<![a-z0-9])mnn|mnnconvert|mnnquant"),
    "ncnn": re.compile(r"(?i)ncnn|pnnx"),
    "litert": re.compile(r"(?i)litert|tflite|onnx2tf"),
}
EXEMPT = {"onnxruntime": "ONNX Runtime is the core's reference executor (see the module docstring)"}


def _docstrings(source: str) -> set[tuple[int, int]]:
    """Start positions of module, class and function docstrings."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add((first.lineno, first.col_offset))
    return found


def mentions(path: Path, pattern: re.Pattern, search_docstrings: bool) -> list[str]:
    source = path.read_text()
    skip = set() if search_docstrings else _docstrings(source)
    kinds = {tokenize.NAME, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [f"{path.relative_to(REPO)}:{tok.start[0]}: {tok.string[:100]}"
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type in kinds and tok.start not in skip and pattern.search(tok.string)]


def test_every_target_package_has_its_words_or_an_exemption():
    assert set(registry.target_names()) == set(WORDS) | set(EXEMPT)


def test_a_target_shares_only_with_existing_targets_and_not_back():
    """Sharing goes one way (tensorrt_rtx uses tensorrt's builder; tensorrt never names tensorrt_rtx)."""
    targets = {t.name: t for t in registry.all_targets()}
    for target in targets.values():
        for other in target.shares:
            assert other in targets and other != target.name and target.name not in targets[other].shares


def _sharing(name: str) -> list[Path]:
    """The packages of the targets that declare they share `name`'s code (Target.shares: one product family, as
    tensorrt_rtx builds with the tensorrt target's builder). Only they may name it besides its own package."""
    return [PACKAGE / "targets" / t.name for t in registry.all_targets() if name in t.shares]


@pytest.mark.parametrize("name", sorted(WORDS))
def test_no_module_outside_the_target_package_mentions_it(name):
    allowed = [PACKAGE / "targets" / name, *_sharing(name)]
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if any(folder in path.parents for folder in allowed):
            continue
        found += mentions(path, WORDS[name], search_docstrings=rel.startswith("convertctl/cli/"))
    assert not found, f"{name} is named outside convertctl/targets/{name}/:\n" + "\n".join(found)


def test_listing_the_targets_imports_no_runtime():
    """Discovery imports each package's target.py, which imports its runtime only inside the functions that
    need it (as Polygraphy's tests/test_deps.py checks of its backends)."""
    code = ("import sys\nfrom convertctl.targets import registry\n"
            "targets = registry.all_targets()\n"
            "print([t.name for t in targets], [t.check is not None for t in targets])\n"
            "print(sorted(m for m in ('tensorrt', 'tensorrt_rtx', 'openvino', 'onnxruntime', 'nncf', 'onnx', 'cuda',"
            " 'MNN', '_tools', 'ncnn', 'pnnx', 'ai_edge_litert', 'tensorflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    names, runtimes = out.splitlines()
    assert names == ("['litert', 'mnn', 'ncnn', 'onnxruntime', 'openvino', 'tensorrt', 'tensorrt_rtx'] "
                     "[True, True, True, True, True, True, True]")
    assert runtimes == "[]"


def test_each_target_has_its_extra_in_pyproject():
    """`pip install convertctl[<extra>]` installs the target's runtime and the distributions it records."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def distributions(extra: str, seen=()) -> set[str]:
        names = set()
        for req in extras[extra]:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
            if name == "convertctl":  # convertctl[onnx]: that extra's distributions too
                for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                    names |= distributions(inner.strip(), (*seen, extra)) if inner.strip() not in seen else set()
            else:
                names.add(name)
        return names

    for target in registry.all_targets():
        assert target.extra in extras, f"{target.name}: no extra {target.extra!r} in pyproject.toml"
        got = distributions(target.extra)
        module_dists = (target.distribution,) if isinstance(target.distribution, str) else target.distribution
        assert got & set(module_dists), f"{target.name}: extra {target.extra!r} installs none of {module_dists}"
        # what the run's environment records for the target comes with its extra (cuda-bindings: a
        # dependency of cuda-python; recorded under whichever name is installed)
        assert set(target.environment) - {"cuda-bindings"} <= got, (target.name, target.environment, got)


def test_the_environment_tracks_every_targets_distributions():
    from convertctl.report.environment import CORE_TRACKED, tracked

    names = tracked()
    assert len(names) == len(set(names)) and names[: len(CORE_TRACKED)] == CORE_TRACKED
    for target in registry.all_targets():
        assert set(target.environment) <= set(names), target.name
