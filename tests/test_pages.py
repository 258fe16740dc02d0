"""The pages' files (refinery/pages): every script parses, and a page is its files inlined -
the script and style it runs are the ones its Content-Security-Policy allows by hash."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from refinery.pages import asset, csp_hash

SCRIPTS = sorted(p.name for p in files("refinery.pages").iterdir() if p.name.endswith(".js"))


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js here to parse the pages' scripts")
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses(script: str, tmp_path: Path) -> None:
    path = tmp_path / script
    path.write_text(asset(script))
    proc = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_review_page_runs_what_its_policy_allows() -> None:
    from refinery.review.page import render_page

    page = render_page({"files": [], "groups": [], "rejects": [], "errors": []})
    inline_script = re.findall(r"<script>(.*?)</script>", page, re.S)
    inline_style = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert inline_script == [asset("review.js")] and inline_style == [asset("review.css")]
    assert csp_hash(asset("review.js")) in page and csp_hash(asset("review.css")) in page
    assert "${" not in page


def test_the_search_page_runs_what_its_policy_allows() -> None:
    pytest.importorskip("fastapi")
    from refinery.serve.app import CSP, render_page

    page = render_page([], 1 << 20)
    assert re.findall(r"<script>(.*?)</script>", page, re.S) == [asset("search.js")]
    assert re.findall(r"<style>(.*?)</style>", page, re.S) == [asset("search.css")]
    assert csp_hash(asset("search.js")) in CSP and csp_hash(asset("search.css")) in CSP and "${" not in page
