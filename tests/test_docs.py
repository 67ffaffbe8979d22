"""The docs as a user meets them: every relative link and every cited results file exists, and the README's and
the model card's Python and shell snippets run as written, offline, against a Hub cache holding the shipped
checkpoint under its Hub id."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onenet_hf.data.example_photos import example_gallery, example_photos

from .hub_cache import add_snapshot

ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "onenet-hf/onenet-flickr8k"
USER_DOCS = ("README.md", "model_card.md")
DOCS = [ROOT / name for name in (*USER_DOCS, "CONTRIBUTING.md", "CHANGELOG.md", "DEVELOPERS.md", "bench/README.md")]
DOCS += sorted((ROOT / "docs").rglob("*.md"))
# Snippets a test cannot run as written, and why; every other snippet of the README and the card runs.
NOT_RUN = {
    "pip install": "installs packages into the environment",
    "spaces/app.py": "starts a server that runs until it is stopped",
    "onenet train --data-dir": "the 40-minute training recipe",
}
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_RESULT_FILE = re.compile(r"bench/results/[\w./-]+\.json")


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced blocks of one language in a Markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def runnable(blocks: list[str]) -> list[str]:
    return [block for block in blocks if not any(marker in block for marker in NOT_RUN)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_cited_results_file_exists(doc):
    text = doc.read_text(encoding="utf-8")
    for link in _LINK.findall(text):
        if "://" in link or link.startswith(("#", "mailto:")):
            continue
        target = (doc.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{doc.name} links to {link}, which does not exist"
    for cited in _RESULT_FILE.findall(text):
        assert (ROOT / cited).is_file(), f"{doc.name} cites {cited}, which is not in the repository"


def test_the_snippet_extraction_finds_the_docs_code_and_skips_only_what_it_says():
    readme = code_blocks(ROOT / "README.md", "python")
    assert readme and "OneNet.from_pretrained" in readme[0]
    shell = code_blocks(ROOT / "README.md", "bash")
    skipped = [block for block in shell if block not in runnable(shell)]
    assert skipped and all(any(marker in block for marker in NOT_RUN) for block in skipped)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder laid out as the snippets expect (photo.jpg, query.jpg, painting.jpg, photos/, ~/photos, the
    checkout's checkpoints/) and an environment: a fresh HOME, the Hub cache, offline."""
    work = tmp_path_factory.mktemp("docs")
    photos = {path.stem: path for path in example_photos()}
    shutil.copy(photos["chelsea"], work / "photo.jpg")
    shutil.copy(photos["motorcycle_left"], work / "query.jpg")
    shutil.copy(photos["coffee"], work / "painting.jpg")
    (work / "checkpoints").symlink_to(ROOT / "checkpoints")
    for folder in (work / "photos", work / "home" / "photos"):
        folder.mkdir(parents=True)
        for path in example_gallery():
            shutil.copy(path, folder)
    shutil.copy(photos["astronaut"], work / "home" / "photos" / "beach.jpg")
    add_snapshot(work / "hf" / "hub", REPO_ID, ROOT / "checkpoints" / "onenet-flickr8k")
    env = {k: v for k, v in os.environ.items() if k not in ("ONENET_MODEL", "HF_HUB_CACHE", "PYTHONPATH")}
    env |= {"HOME": str(work / "home"), "HF_HOME": str(work / "hf"), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return work, env


@pytest.mark.slow
@pytest.mark.parametrize("doc", USER_DOCS)
def test_the_python_snippets_run_in_order(workspace, doc):
    work, env = workspace
    program = "\n\n".join(code_blocks(ROOT / doc, "python"))
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=work, env=env, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("doc", USER_DOCS)
def test_the_shell_snippets_run(workspace, doc):
    work, env = workspace
    for block in runnable(code_blocks(ROOT / doc, "bash")):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{block}\n{result.stderr[-3000:]}"
