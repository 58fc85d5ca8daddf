"""The output folder is only ever complete or clearly partial."""

from __future__ import annotations

from convertctl.report.outdir import MARKER, OutputFolder


def test_commit_replaces_previous_output(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / MARKER).write_text("")  # a previous convertctl output: only such a folder is ever replaced
    (final / "old.txt").write_text("previous run")
    folder = OutputFolder(final)
    staging = folder.open()
    assert staging != final and not (staging / "new.txt").exists()
    (staging / "new.txt").write_text("this run")
    assert (final / "old.txt").exists()  # the previous output stands until the very end
    folder.commit()
    assert sorted(p.name for p in final.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_abandon_keeps_partial_with_error_and_leaves_previous(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "manifest.json").write_text('{"tool": {"name": "convertctl"}}')
    folder = OutputFolder(final)
    staging = folder.open()
    (staging / "model.onnx").write_bytes(b"half")
    partial = folder.abandon("export failed: boom")
    assert partial == tmp_path / "out.partial"
    assert (partial / "ERROR.txt").read_text().startswith("export failed: boom")
    assert not (partial / "manifest.json").exists()
    assert (final / "manifest.json").exists()  # the last complete output is untouched
    assert not staging.exists()
