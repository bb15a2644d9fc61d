"""The README's examples as the tests run them: code blocks of a section, and shell commands split into
argument lists (comments dropped, continuation lines joined)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks(section: str, language: str) -> list[str]:
    """The ```language blocks under the heading ``section`` (up to the next heading of any level)."""
    text = README.read_text()
    start = re.search(rf"^#+ {re.escape(section)}\s*$", text, flags=re.MULTILINE)
    assert start, f"README.md has no section {section!r}"
    body = text[start.end():]
    end = re.search(r"^#+ ", body, flags=re.MULTILINE)
    body = body[: end.start()] if end else body
    return re.findall(rf"^```{language}\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


def commands(section: str, program: str = "atst-sed") -> list[list[str]]:
    """Every ``program …`` command of the ```bash blocks of ``section``, as argument lists after ``program``."""
    found = []
    for block in code_blocks(section, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                found.append(words[1:])
    return found
