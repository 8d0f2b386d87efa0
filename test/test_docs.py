# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Every Markdown document that the docs, docstrings, help texts and config comments name exists."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MD_PATH = re.compile(r"[\w./-]*\w\.md\b")
HELP_KEYWORDS = {"help", "description", "epilog"}
LINK_LABEL = re.compile(r"\[[^\]]*\]\(")  # [label](target): the target is the reference


def _python_texts(path: Path) -> list[str]:
    """Docstrings, help/description keyword strings and comments of one Python file."""
    source = path.read_text()
    texts = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            texts.append(ast.get_docstring(node) or "")
        elif isinstance(node, ast.keyword) and node.arg in HELP_KEYWORDS:
            texts.extend(n.value for n in ast.walk(node.value)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str))
    texts.extend(t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT)
    return texts


def _sources() -> dict[Path, list[str]]:
    sources: dict[Path, list[str]] = {}
    for pattern in ("celegans_autofocus/**/*.py", "launch/*.py", "benchmarks/*.py", "test/*.py", "setup.py"):
        for path in ROOT.glob(pattern):
            sources[path] = _python_texts(path)
    for pattern in ("*.md", "docs/*.md", "benchmarks/*.md", "models/*.md", "config/*.yaml", "Makefile"):
        for path in ROOT.glob(pattern):
            sources[path] = [LINK_LABEL.sub("(", path.read_text())]
    return sources


def _exists(name: str, where: Path) -> bool:
    return (ROOT / name).is_file() or (where.parent / name).is_file()


def test_every_named_markdown_file_exists():
    sources = _sources()
    assert ROOT / "README.md" in sources and ROOT / "celegans_autofocus" / "cli.py" in sources
    missing = sorted({f"{path.relative_to(ROOT)}: {name}"
                      for path, texts in sources.items() for text in texts for name in MD_PATH.findall(text)
                      if not name.startswith("/") and not _exists(name, path)})  # absolute: a command's output
    assert missing == []


def test_the_scan_finds_a_missing_document(tmp_path):
    """The check above can fail: a docstring naming a file that is not there is found."""
    module = tmp_path / "m.py"
    module.write_text('"""See DESIGN.md and docs/architecture.md."""\n')
    names = [name for text in _python_texts(module) for name in MD_PATH.findall(text)]
    assert names == ["DESIGN.md", "docs/architecture.md"]
    assert [name for name in names if not _exists(name, module)] == ["DESIGN.md"]
