"""The output folder is only ever complete or clearly partial."""

from __future__ import annotations

import pytest

from convertctl.errors import UsageError
from convertctl.report.outdir import INVENTORY, MARKER, OutputFolder


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
    assert sorted(p.name for p in final.iterdir()) == [INVENTORY, MARKER, "new.txt"]
    assert (final / INVENTORY).read_text() == "new.txt\n"  # what this run wrote, nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_the_user_added_to_an_earlier_output_stops_its_replacement(tmp_path):
    """The user's files are sacred even inside a convertctl output: the folder is left alone, exit 2, named."""
    final = tmp_path / "out"
    first = OutputFolder(final)
    (first.open() / "sub").mkdir()
    (first.staging / "sub" / "model.bin").write_text("run 1")
    first.commit()
    OutputFolder(final).open()  # the run's own files only: replaceable
    (final / "sub" / "my_notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"holds files convertctl did not write \(sub/my_notes.txt\): replacing it "
                                         r"would delete them, so it is left alone"):
        OutputFolder(final).open()
    assert (final / "sub" / "my_notes.txt").read_text() == "mine"


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
