"""A PyTorch source without torch: what its files are, the checks before a run, the recipe's `source`.

A factory ("pkg.module:callable" or "path/to/file.py:callable") builds an nn.Module; with `path` as well,
`path` is a state dict loaded into it; `path` alone is a TorchScript file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


def torch_file_kind(path: Path) -> str | None:
    """What a PyTorch file is, from its content, whatever its name (.pt, .pth, .jit, .ts, none):
    "torchscript" (torch.jit.save: a zip with ROOT/code/ and ROOT/constants.pkl), "checkpoint" (torch.save
    of a state dict or a pickled module: a zip with ROOT/data.pkl and no code), or None (not a PyTorch zip)."""
    try:
        if not Path(path).is_file() or not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    for root in roots:
        if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
            return "torchscript"
    return "checkpoint" if any(n.endswith("/data.pkl") for n in names) else None


def _is_factory(source: str) -> bool:
    return ":" in source and not Path(source).exists()


def _factory_file(recipe) -> str | None:
    """The factory's .py file as the recipe spells it, if the factory is given as one (not as a module)."""
    target = (recipe.source.factory or "").rpartition(":")[0]
    return target if target.endswith(".py") else None


def claims(source: str) -> bool:
    """A factory spec, a PyTorch zip (by content), or a PyTorch file name; a folder is for the frameworks that
    recognise one from its files."""
    return _is_factory(source) or torch_file_kind(Path(source)) is not None or (
        source.lower().endswith(TORCH_SUFFIXES) and not Path(source).is_dir())


def cli_source(source: str, weights: str | None) -> dict:
    if _is_factory(source):
        return {"framework": "pytorch", "factory": source, **({"path": weights} if weights else {})}
    if torch_file_kind(Path(source)) == "checkpoint":  # weights (or a pickled module), not a network to load
        from convertctl.errors import UsageError

        raise UsageError(f"{source} is a PyTorch checkpoint (torch.save), not a TorchScript file: it holds the "
                         "weights, not the network",
                         hint=f"give the network as a factory with these weights: FILE.py:make_model --weights "
                              f"{source} (or save it with torch.jit.save)")
    return {"framework": "pytorch", "path": source}


def check_source(source) -> None:
    if source.path is None and source.factory is None:
        raise ValueError("a pytorch source needs 'factory', 'path' (TorchScript), or both (state dict)")


def preflight(recipe) -> None:
    from convertctl.errors import SourceModelError

    if recipe.source.path is not None:
        from convertctl.model import require_regular_file

        require_regular_file(recipe.source.path)
    factory = _factory_file(recipe)
    if factory is not None and not Path(factory).is_file():
        raise SourceModelError(f"factory file not found: {factory}")


def source_files(recipe) -> list[Path]:
    files = [recipe.source.path] if recipe.source.path else []
    factory = _factory_file(recipe)
    return files + ([Path(factory)] if factory is not None else [])


def read_paths(recipe) -> list[Path]:
    paths = [recipe.source.path, recipe.source.path.parent] if recipe.source.path is not None else []
    factory = _factory_file(recipe)
    return paths + ([Path(factory), Path(factory).parent] if factory is not None else [])
