"""docs/timeline.md's example runs as written and saves the picture the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.doc_blocks import ROOT, code_blocks

pytest.importorskip("matplotlib")

PAGE = ROOT / "docs" / "timeline.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_example_saves_the_picture_the_page_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code,) = code_blocks(PAGE, "python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(PAGE), "exec"), {})
    saved = tmp_path / "timeline.png"
    assert saved.read_bytes().startswith(PNG_SIGNATURE)
    # The page shows the picture the example makes, committed beside it.
    assert "](timeline.png)" in PAGE.read_text()
    assert (PAGE.parent / "timeline.png").read_bytes().startswith(PNG_SIGNATURE)
