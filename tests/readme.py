"""The README's examples as the tests run them: code blocks of a section, and shell commands split into
argument lists (comments dropped, continuation lines joined)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks(section: str, language: str) -> list[str]:
    """The ```language blocks under the heading ``section`` (up to the next heading of any level)."""
    lines, inside, fenced = [], False, False
    for line in README.read_text().splitlines(keepends=True):
        heading = not fenced and re.match(r"#+ ", line)  # a '# comment' in a code block is no heading
        if heading:
            inside = re.fullmatch(rf"#+ {re.escape(section)}\s*", line) is not None
        elif inside:
            lines.append(line)
        if line.startswith("```"):
            fenced = not fenced
    assert lines, f"README.md has no section {section!r}"
    return re.findall(rf"^```{language}\n(.*?)^```", "".join(lines), flags=re.MULTILINE | re.DOTALL)


def commands(section: str, program: str = "atst-sed") -> list[list[str]]:
    """Every ``program …`` command of the ```bash blocks of ``section``, as argument lists after ``program``."""
    found = []
    for block in code_blocks(section, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                found.append(words[1:])
    return found
