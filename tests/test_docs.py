"""Every fenced code block of the docs is checked, so the docs cannot drift from the code.

The last non-blank line before a block's opening fence is a marker comment saying how:

``<!-- from: PATH -->``
    an excerpt: its lines appear, contiguous and unchanged, in PATH (from the repository root).
``<!-- run -->``
    ``python``: run as a script; ``pycon``: run as a doctest (``ELLIPSIS``,
    ``NORMALIZE_WHITESPACE``); ``console``: each ``$ `` command runs in bash and must exit 0, and
    the lines shown after it must appear in its output, in that order (``...`` stands for any
    text, whitespace runs compare equal); ``ini``: loaded with ``soma_schedulers.config.load_config``;
    ``toml``: parsed.
``<!-- run: pytest -->``
    ``python``: a test module, run with pytest; it must pass.
``<!-- file: NAME -->``
    ``ini``: loaded with ``load_config``, and written as NAME where the document's runnable blocks run.
``<!-- not run: WHY; CI runs it in PATH -->``
    for commands a unit test cannot run (they need Docker); PATH (a file of this repository)
    is where CI runs them.

A block without a marker, or with any other one, fails. Runnable blocks run in a new temporary
directory, with the example backend (``tests/example_backend``) importable and its entry points
registered, as ``pip install tests/example_backend`` would make them. Relative links of the
documents must point to existing files and headings.

Add a document to :data:`DOCS` once every block of it has its marker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from soma_schedulers.config import load_config

ROOT = Path(__file__).resolve().parents[1]
#: The documents whose blocks are checked (paths from the repository root).
DOCS = ["docs/writing-a-backend.md"]
TIMEOUT = 300

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")
_NOT_RUN = re.compile(r"^not run:\s*(?P<why>\S.*?);\s*CI runs it in (?P<where>\S+?)\.?$")
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_CONSOLE = {"console", "shell-session"}
_SHELL = {"sh", "bash", "shell"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    doc: Path
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    marker: str | None  # the marker comment's body; None when there is none

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc}:{self.line}"


def extract(doc: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``doc``, and the problems of its structure (an unclosed fence)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        close = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
        if end is None:
            problems.append(f"{doc}:{i + 1}: the code block opened here is never closed")
            break
        body = "\n".join(line[indent:] if line.startswith(" " * indent) else line.lstrip()
                         for line in lines[i + 1:end])
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(before)
        blocks.append(Block(doc, i + 1, m["lang"].lower(), body + "\n" if body else "",
                            marker["body"] if marker else None))
        i = end + 1
    return blocks, problems


# -- the checks ------------------------------------------------------------------------------------


def check_block(block: Block, workdir: Path, env: dict[str, str], files: dict[str, str]) -> None:
    """Check one block as its marker says; an AssertionError saying what is wrong when it is."""
    if block.marker is None:
        raise AssertionError(f"{block.where}: a {block.lang or 'plain'} block without a marker comment "
                             "(from: PATH, run, run: pytest, file: NAME, or not run: WHY; CI runs it in PATH; "
                             "see tests/test_docs.py)")
    kind, _, arg = block.marker.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if kind == "from" and arg:
        check_excerpt(block, arg)
    elif kind == "not run":
        check_not_run(block)
    elif kind == "file" and arg:
        if block.lang != "ini":
            raise AssertionError(f"{block.where}: 'file:' is for ini blocks, not {block.lang!r}")
        check_ini(block, workdir / Path(arg).name)
    elif kind == "run":
        for name, text in files.items():
            (workdir / name).write_text(text, encoding="utf-8")
        run_block(block, arg, workdir, env)
    else:
        raise AssertionError(f"{block.where}: unknown marker <!-- {block.marker} -->")


def check_excerpt(block: Block, rel: str) -> None:
    source = (ROOT / rel).resolve()
    if not source.is_relative_to(ROOT) or not source.is_file():
        raise AssertionError(f"{block.where}: 'from: {rel}' names no file of the repository")
    want = [line.rstrip() for line in block.text.splitlines()]
    have = [line.rstrip() for line in source.read_text(encoding="utf-8").splitlines()]
    if not want:
        raise AssertionError(f"{block.where}: an empty excerpt")
    best, best_len = -1, -1
    for start in range(len(have) - len(want) + 1):
        same = next((k for k in range(len(want)) if have[start + k] != want[k]), len(want))
        if same == len(want):
            return
        if same > best_len:
            best, best_len = start, same
    if best_len <= 0:
        raise AssertionError(f"{block.where}: excerpt not found in {rel}: its first lines are nowhere there")
    raise AssertionError(f"{block.where}: excerpt no longer verbatim in {rel}: line {best_len + 1} of the block "
                         f"is {want[best_len]!r}, {rel}:{best + best_len + 1} has "
                         f"{have[best + best_len] if best + best_len < len(have) else '(end of file)'!r}")


def check_not_run(block: Block) -> None:
    m = _NOT_RUN.match(block.marker or "")
    if not m:
        raise AssertionError(f"{block.where}: write <!-- not run: WHY; CI runs it in PATH -->, "
                             f"got <!-- {block.marker} -->")
    if not (ROOT / m["where"]).exists():
        raise AssertionError(f"{block.where}: 'CI runs it in {m['where']}': no such file in the repository")


def check_ini(block: Block, path: Path) -> None:
    path.write_text(block.text, encoding="utf-8")
    try:
        load_config(path)
    except Exception as exc:  # the configuration error names the key
        raise AssertionError(f"{block.where}: load_config refuses this INI block: {exc}") from None


def run_block(block: Block, how: str, workdir: Path, env: dict[str, str]) -> None:
    lang = block.lang
    if how == "pytest" and lang in ("python", "py"):
        (workdir / "test_doc_block.py").write_text(block.text, encoding="utf-8")
        _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_doc_block.py"],
             block, workdir, env)
    elif how:
        raise AssertionError(f"{block.where}: unknown 'run: {how}' (only 'run: pytest', for python)")
    elif lang in ("python", "py"):
        (workdir / "doc_block.py").write_text(block.text, encoding="utf-8")
        _run([sys.executable, "doc_block.py"], block, workdir, env)
    elif lang == "pycon":
        (workdir / "doc_block.txt").write_text(block.text, encoding="utf-8")
        _run([sys.executable, "-m", "doctest", "-o", "ELLIPSIS", "-o", "NORMALIZE_WHITESPACE", "doc_block.txt"],
             block, workdir, env)
    elif lang in _CONSOLE:
        for command, shown in console_steps(block):
            out = _run(["bash", "-c", command], block, workdir, env)
            check_output(block, command, shown, out)
    elif lang in _SHELL:
        _run(["bash", "-euo", "pipefail", "-c", block.text], block, workdir, env)
    elif lang == "ini":
        check_ini(block, workdir / "doc_block.ini")
    elif lang == "toml":
        import tomllib

        try:
            tomllib.loads(block.text)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"{block.where}: not TOML: {exc}") from None
    else:
        raise AssertionError(f"{block.where}: no way to run a {lang or 'plain'!r} block: mark it from: or not run:")


def _run(argv: list[str], block: Block, workdir: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{block.where}: {argv[-1] if argv[0] == 'bash' else ' '.join(argv[1:])} "
                             f"exited with {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc.stdout


def console_steps(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, lines shown after it)`` of a console block; ``\\`` continues a command."""
    steps: list[tuple[str, list[str]]] = []
    continued = False
    for line in block.text.splitlines():
        if continued:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        elif not steps:
            if line.strip():
                raise AssertionError(f"{block.where}: a console block starts with a '$ ' command, got {line!r}")
            continue
        else:
            steps[-1][1].append(line)
        continued = line.endswith("\\") and (continued or line.startswith("$ "))
    if not steps:
        raise AssertionError(f"{block.where}: a console block without a '$ ' command")
    return steps


def _normal(text: str) -> str:
    return " ".join(text.split())


def check_output(block: Block, command: str, shown: list[str], output: str) -> None:
    """Each non-blank shown line matches a line of ``output``, in order (``...``: any text)."""
    lines = output.splitlines()
    at = 0
    for want in shown:
        pattern = _normal(want)
        if not pattern or pattern == "...":
            continue
        regex = re.compile(".*".join(re.escape(part) for part in pattern.split("...")))
        found = next((k for k in range(at, len(lines)) if regex.fullmatch(_normal(lines[k]))), None)
        if found is None:
            raise AssertionError(f"{block.where}: `{command}` did not print {want!r} "
                                 f"(after line {at} of its output):\n{output[-4000:]}")
        at = found + 1


def check_links(doc: Path) -> list[str]:
    """Relative links of ``doc`` whose file or heading does not exist."""
    text = re.sub(r"^ *(`{3,}|~{3,}).*?^ *\1", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
    bad = []
    for m in _LINK.finditer(text):
        target = m["target"]
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors of a document's headings."""
    out = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m[1].lower()).replace(" ", "-")
            out.add(slug)
    return out


# -- the tests -------------------------------------------------------------------------------------


def _all_blocks() -> Iterator[Block]:
    for doc in DOCS:
        yield from extract(ROOT / doc)[0]


def _files(doc: Path) -> dict[str, str]:
    """The ``file: NAME`` blocks of ``doc``, by name."""
    out = {}
    for block in extract(doc)[0]:
        kind, _, arg = (block.marker or "").partition(":")
        if kind.strip() == "file" and arg.strip():
            out[Path(arg.strip()).name] = block.text
    return out


@pytest.fixture
def block_env(example_pythonpath: str) -> dict[str, str]:
    """The environment of runnable blocks: the example installed, this Python's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (example_pythonpath, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in tests/example_backend
    return env


@pytest.mark.parametrize("doc", DOCS)
def test_document_is_well_formed(doc: str) -> None:
    blocks, problems = extract(ROOT / doc)
    assert not problems, problems
    assert blocks, f"{doc} has no code block: is it still in DOCS for a reason?"
    assert not check_links(ROOT / doc), check_links(ROOT / doc)


@pytest.mark.parametrize("block", list(_all_blocks()), ids=lambda b: f"{b.doc.name}:{b.line}-{b.lang or 'text'}")
def test_block(block: Block, tmp_path: Path, block_env: dict[str, str]) -> None:
    check_block(block, tmp_path, block_env, _files(block.doc))


# -- the checker can fail --------------------------------------------------------------------------

SLURM_EXAMPLE = "tests/example_backend/soma_example_slurm.py"


@pytest.mark.parametrize("markdown, error", [
    ("```python\nprint(1)\n```\n", "without a marker comment"),
    ("<!-- run -->\nsome prose\n\n```python\nprint(1)\n```\n", "without a marker comment"),
    ("<!-- runs -->\n```python\nprint(1)\n```\n", "unknown marker"),
    (f"<!-- from: {SLURM_EXAMPLE} -->\n```python\nclass SlurmExample(Scheduler):\n"
     '    """Slurm, thread safe."""\n```\n', "no longer verbatim"),
    ("<!-- from: no/such/file.py -->\n```python\nx = 1\n```\n", "names no file"),
    ("<!-- run -->\n```python\nimport soma_example_slurm\nassert soma_example_slurm.LAUNCH_MARK == 'x'\n```\n",
     "AssertionError"),
    ("<!-- run -->\n```pycon\n>>> 1 + 1\n3\n```\n", "Expected"),
    ("<!-- run -->\n```console\n$ echo hello\nhallo\n```\n", "did not print 'hallo'"),
    ("<!-- run -->\n```console\n$ exit 3\n```\n", "exited with 3"),
    ("<!-- run: pytest -->\n```python\ndef test_x():\n    assert False\n```\n", "1 failed"),
    ("<!-- file: site.ini -->\n```ini\n[site]\nSCHEDULER_TYPE = slurm\nCOMAND_TIMEOUT = 3\n```\n",
     "unknown key 'COMAND_TIMEOUT'"),
    ("<!-- not run: needs Docker -->\n```console\n$ docker ps\n```\n", "CI runs it in PATH"),
    ("<!-- not run: needs Docker; CI runs it in .ci/nowhere -->\n```console\n$ docker ps\n```\n", "no such file"),
], ids=["no-marker", "marker-not-next", "unknown-marker", "edited-excerpt", "excerpt-of-nothing", "python-fails",
        "doctest-fails", "console-output", "console-exit", "pytest-fails", "ini-bad-key", "not-run-no-ci",
        "not-run-bad-path"])
def test_a_wrong_block_fails(markdown: str, error: str, tmp_path: Path, block_env: dict[str, str]) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(markdown, encoding="utf-8")
    [block], problems = extract(doc)
    assert not problems
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError, match=re.escape(error)):
        check_block(block, work, block_env, _files(doc))


def test_a_right_block_passes(tmp_path: Path, block_env: dict[str, str]) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"<!-- from: {SLURM_EXAMPLE} -->\n```python\nclass SlurmExample(Scheduler):\n```\n\n"
                   "<!-- file: site.ini -->\n```ini\n[site]\nSCHEDULER_TYPE = example_slurm\n```\n\n"
                   "<!-- run -->\n```console\n$ cat site.ini && printf 'a   b  c\\nx y z\\n'\n...\na b c\nx ... z\n```\n",
                   encoding="utf-8")
    blocks, _ = extract(doc)
    assert [b.lang for b in blocks] == ["python", "ini", "console"]
    for block in blocks:
        check_block(block, tmp_path, block_env, _files(doc))


def test_unclosed_fences_and_broken_links_are_found(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n[ok](#title) [bad](#nothing) [gone](missing.md)\n<!-- run -->\n```python\nx = 1\n",
                   encoding="utf-8")
    assert "never closed" in extract(doc)[1][0]
    assert check_links(doc) == ["#nothing: no heading #nothing in doc.md", "missing.md: no such file"]
