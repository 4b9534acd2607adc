"""Every shell example of README.md works when pasted, and answers what the README says.

The conventions (also in an HTML comment above the README's first example):

* every fenced block tagged ``sh``, ``bash`` or ``shell`` runs, in README order, in ONE bash
  session (variables set by one block are there for the next, as in one terminal), from the
  repository root, with ``set -euo pipefail``, against ``make dev`` (``relay-local``) started as
  the make target starts it, in a process of its own on a free port. The examples find the API's
  URL and key the way a user does: ``. .venv/relay-local.env``, which ``make dev`` writes; a
  literal ``http://127.0.0.1:3000`` (``make dev``'s default address) is read as that stack's;
* PATH is a user's after the README's setup: the project's virtualenv is not on it;
* ``<!-- readme: not run (<reason>) -->`` on the line before a fence skips that block;
* ``# → <status>`` or ``# → <status> <JSON>``, on the line(s) after a command or at the end of
  its last line, is the answer the README states for the last ``curl`` before it in that block:
  the HTTP status must be that one, and the JSON (it may run on over the following comment lines)
  must be part of the answer: each key given is there with that value (``"…"``: any value), lists
  are compared item by item from the start. Text after the JSON is prose. Any other ``curl``
  answering 4xx/5xx fails the block at once, like ``--fail``.

``curl`` is wrapped by a shell function that passes every argument on, adds ``-D`` to read the
status and copies the body with ``tee``: what a block prints is what a user sees.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, DevStack, user_environment

README = REPO / "README.md"
RUNNABLE = {"sh", "bash", "shell"}
SESSION_TIMEOUT_S = 600
MARK = "@@readme@@"
ANY = "…"
CONVENTION = "<!-- readme: how the examples run"
DEFAULT_API = "http://127.0.0.1:3000"
"""Where ``make dev`` serves the API unless RELAY_LOCAL_PORT says otherwise."""
SKIPPABLE_WORDS = {"make", "sam", "aws", "--stack-name", ".ci/run", "relay-local"}
"""What a skipped block must use: AWS (an account), another stack, the test suite itself."""

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*readme:\s*not run\s*\((?P<reason>[^)]*\S[^)]*)\)\s*-->\s*$")
_EXPECT = re.compile(r"(?:^|\s)#\s*→\s*(?P<status>\d{3})\b(?P<rest>.*)$")


@dataclass
class Expectation:
    line: int
    status: int
    body: Any = None
    has_body: bool = False


@dataclass
class Block:
    index: int
    lang: str
    fence_line: int  # 1-based line of the opening fence
    end_line: int  # 1-based line of the closing fence
    lines: list[str]  # the block's lines, the fence's indentation removed
    skip_reason: str | None = None
    expectations: list[Expectation] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and self.skip_reason is None

    def source(self) -> str:
        return "\n".join(f"{self.fence_line + 1 + i:5d}  {text}" for i, text in enumerate(self.lines))


def parse_readme(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(opening["indent"])
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise AssertionError(f"README.md:{i + 1}: a fence that is never closed")
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        skip = _NOT_RUN.match(before)
        block = Block(
            index=len(blocks),
            lang=opening["lang"].lower(),
            fence_line=i + 1,
            end_line=j + 1,
            lines=[line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : j]],
            skip_reason=skip["reason"].strip() if skip else None,
        )
        if block.lang in RUNNABLE:
            block.expectations = parse_expectations(block)
        blocks.append(block)
        i = j + 1
    return blocks


def parse_expectations(block: Block) -> list[Expectation]:
    found = []
    for offset, text in enumerate(block.lines):
        match = _EXPECT.search(text)
        if not match:
            continue
        line = block.fence_line + 1 + offset
        expectation = Expectation(line=line, status=int(match["status"]))
        rest = match["rest"].strip()
        if rest.startswith(("{", "[")):
            expectation.body = _json_prefix(rest, block.lines[offset + 1 :], line)
            expectation.has_body = True
        found.append(expectation)
    return found


def _json_prefix(first: str, following: list[str], line: int) -> Any:
    """The JSON that starts ``first`` and may go on over the comment lines after it."""
    text = first
    decoder = json.JSONDecoder()
    for more in [None, *following[:20]]:
        if more is not None:
            if not more.lstrip().startswith("#"):
                break
            text += " " + more.lstrip()[1:].strip()
        try:
            value, _ = decoder.raw_decode(text)
        except ValueError:
            continue
        return value
    raise AssertionError(f"README.md:{line}: the answer after '# →' is not JSON: {text[:200]}")


def matches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from the README's ``expected`` (empty when it is part of it)."""
    if expected == ANY:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or 'the answer'}: expected an object, got {json.dumps(actual)[:200]}"]
        problems = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                problems.append(f"{where}: missing")
            else:
                problems += matches(value, actual[key], where)
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {json.dumps(actual)[:200]}"]
        if len(actual) < len(expected):
            return [f"{path}: expected at least {len(expected)} items, got {len(actual)}"]
        problems = []
        for i, value in enumerate(expected):
            problems += matches(value, actual[i], f"{path}[{i}]")
        return problems
    if expected != actual:
        return [f"{path}: expected {json.dumps(expected)}, got {json.dumps(actual)[:200]}"]
    return []


# -- the session ------------------------------------------------------------------------------------

PREAMBLE = r"""
set -euo pipefail
__readme_begin() { printf '\n@@readme@@ begin %s\n' "$1"; __readme_block=$1; }
__readme_end() { printf '\n@@readme@@ end %s\n' "$1"; }
trap '__readme_rc=$?; printf "\n@@readme@@ failed %s %s\n" "$LINENO" "$__readme_rc"' ERR

# The README's answer for a curl at line $1 that got status $2: the first '# →' at or after it
# in the same block.
__readme_allowed() {
  local line=$1 status=$2 expect
  for expect in "${__readme_expectations[@]}"; do
    set -- $expect  # block, line, status
    if [ "$1" = "$__readme_block" ] && [ "$2" -ge "$line" ]; then
      [ "$3" = "$status" ]
      return
    fi
  done
  return 1
}

curl() {
  local line=${BASH_LINENO[0]} rc=0 call status
  call=$(mktemp -d "$__readme_dir/call.XXXXXX")
  command curl -D "$call/headers" "$@" | tee "$call/body" || rc=$?
  status=$(awk '/^HTTP\//{s=$2} END{print s}' "$call/headers" 2>/dev/null | tr -d '\r')
  status=${status:-000}
  printf '%s\t%s\t%s\t%s\t%s\n' "$__readme_block" "$line" "$status" "$rc" "$call" >> "$__readme_dir/calls.tsv"
  if [ "$rc" -ne 0 ]; then
    return "$rc"
  fi
  if [ "$status" -ge 400 ] && ! __readme_allowed "$line" "$status"; then
    printf '\n@@readme@@ curl at README.md:%s answered HTTP %s and no "# → %s" follows it\n' \
      "$line" "$status" "$status"
    return 22
  fi
}
"""


@dataclass
class Call:
    block: int
    line: int
    status: int
    exit_code: int
    body: str


def build_script(readme: str, blocks: list[Block], workdir: Path, api_url: str = DEFAULT_API) -> str:
    """The README with every line outside a runnable block blanked out: a command's line in the
    script is its line in README.md, so bash's $LINENO names the README's line. ``make dev``'s
    default address in a block is the address of the stack the examples run against."""
    lines = [""] * len(readme.splitlines())
    expectations = [f'"{b.index} {e.line} {e.status}"' for b in blocks if b.runnable for e in b.expectations]
    preamble = PREAMBLE + f"__readme_dir={workdir}\n__readme_expectations=({' '.join(expectations)})\n"
    (workdir / "preamble.sh").write_text(preamble)
    lines[0] = f'. "{workdir}/preamble.sh"'
    for block in blocks:
        if not block.runnable:
            continue
        begin = f"__readme_begin {block.index}"
        lines[block.fence_line - 1] = begin if block.fence_line != 1 else f"{lines[0]}; {begin}"
        for offset, text in enumerate(block.lines):
            lines[block.fence_line + offset] = text.replace(DEFAULT_API, api_url)
        lines[block.end_line - 1] = f"__readme_end {block.index}"
    return "\n".join(lines) + "\n"


def split_output(output: str) -> tuple[dict[int, str], tuple[int, int] | None, list[str]]:
    """Each block's output, where the session failed (README line, exit status) and notes."""
    per_block: dict[int, list[str]] = {}
    current: int | None = None
    failed = None
    notes = []
    for line in output.splitlines():
        if line.startswith(MARK):
            words = line[len(MARK) :].split()
            if words[:1] == ["begin"]:
                current = int(words[1])
                per_block[current] = []
            elif words[:1] == ["end"]:
                current = None
            elif words[:1] == ["failed"]:
                failed = (int(words[1]), int(words[2]))
            else:
                notes.append(line[len(MARK) :].strip())
            continue
        if current is not None:
            per_block[current].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in per_block.items()}, failed, notes


def read_calls(workdir: Path) -> list[Call]:
    path = workdir / "calls.tsv"
    if not path.exists():
        return []
    calls = []
    for row in path.read_text().splitlines():
        block, line, status, rc, call = row.split("\t")
        body_file = Path(call) / "body"
        body = body_file.read_text(errors="replace") if body_file.exists() else ""
        calls.append(Call(int(block), int(line), int(status), int(rc), body))
    return calls


def block_report(block: Block, output: str, problems: list[str]) -> str:
    return "\n".join(
        [
            f"README.md:{block.fence_line}-{block.end_line}, block {block.index} ({block.lang}):",
            *[f"  - {p}" for p in problems],
            "--- the block ---",
            block.source(),
            "--- what it printed ---",
            output or "(nothing)",
        ]
    )


def check_answers(blocks: list[Block], calls: list[Call], outputs: dict[int, str]) -> dict[int, list[str]]:
    """What each block answered that its README does not say, by block."""
    reports: dict[int, list[str]] = {}
    for block in blocks:
        if not block.runnable:
            continue
        ours = [c for c in calls if c.block == block.index]
        problems = []
        answered: set[int] = set()
        for expect in block.expectations:
            before = [c for c in ours if c.line <= expect.line]
            if not before:
                problems.append(f"README.md:{expect.line}: '# → {expect.status}' follows no curl")
                continue
            call = before[-1]
            answered.add(id(call))
            if call.status != expect.status:
                problems.append(
                    f"README.md:{expect.line}: expected HTTP {expect.status}, the curl at line "
                    f"{call.line} got {call.status}: {call.body[:300]}"
                )
                continue
            if expect.has_body:
                try:
                    actual = json.loads(call.body)
                except ValueError:
                    problems.append(f"README.md:{expect.line}: the answer is not JSON: {call.body[:300]}")
                    continue
                problems += [f"README.md:{expect.line}: {p}" for p in matches(expect.body, actual)]
        for call in ours:
            if call.status >= 400 and id(call) not in answered:
                problems.append(f"README.md:{call.line}: HTTP {call.status} with no '# →' saying so")
        if problems:
            reports[block.index] = problems
    return reports


# -- the tests ------------------------------------------------------------------------------------


def test_readme_conventions_are_kept() -> None:
    """Only blocks that cannot run against a running ``make dev`` are skipped: each one needs an
    AWS account (``aws``, ``sam``, ``--stack-name``), starts a stack or runs the test suite."""
    blocks = parse_readme(README.read_text())
    shell = [b for b in blocks if b.lang in RUNNABLE]
    assert shell, "README.md has no shell examples"
    for block in shell:
        if block.skip_reason is None:
            continue
        words = {word for line in block.lines if not line.lstrip().startswith("#") for word in line.split()}
        assert words & SKIPPABLE_WORDS, (
            f"README.md:{block.fence_line} is not run ({block.skip_reason}) but uses none of "
            f"{sorted(SKIPPABLE_WORDS)}: make it run against make dev instead"
        )
    lines = README.read_text().splitlines()
    first_run = min(b.fence_line for b in shell if b.runnable)
    assert any(line.startswith(CONVENTION) for line in lines[: first_run - 1]), (
        f"the README explains how its examples are run ({CONVENTION}...) above the first one"
    )


def test_expectation_parsing_and_matching() -> None:
    readme = "\n".join(
        [
            "<!-- readme: not run (needs an AWS account) -->",
            "```bash",
            "sam deploy",
            "```",
            "```sh",
            "curl -s $API/x   # → 202",
            "curl -s $API/y",
            '# → 404 {"error": {"code": "not_found",',
            '#                  "message": "…"}} and prose after it',
            "```",
            "```json",
            "{}",
            "```",
        ]
    )
    blocks = parse_readme(readme)
    assert [(b.lang, b.skip_reason, b.runnable) for b in blocks] == [
        ("bash", "needs an AWS account", False),
        ("sh", None, True),
        ("json", None, False),
    ]
    first, second = blocks[1].expectations
    assert (first.line, first.status, first.has_body) == (6, 202, False)
    assert (second.line, second.status, second.body) == (
        8,
        404,
        {"error": {"code": "not_found", "message": ANY}},
    )
    assert matches(second.body, {"error": {"code": "not_found", "message": "x", "details": []}}) == []
    assert matches(second.body, {"error": {"code": "other"}}) == [
        'error.code: expected "not_found", got "other"',
        "error.message: missing",
    ]
    assert matches({"items": [{"a": 1}]}, {"items": []}) == ["items: expected at least 1 items, got 0"]


def run_readme(
    readme: str, workdir: Path, env: dict[str, str] | None = None, api_url: str = DEFAULT_API
) -> list[str]:
    """Run ``readme``'s examples as the conventions say; one report per block that failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = parse_readme(readme)
    runnable = [b for b in blocks if b.runnable]
    assert runnable, "no README example to run"
    script = workdir / "readme.sh"
    script.write_text(build_script(readme, blocks, workdir, api_url))
    try:
        done = subprocess.run(
            ["bash", str(script)],  # noqa: S607 - the user's bash, found on their PATH
            cwd=REPO,
            env=user_environment(TMPDIR=str(workdir), TERM="dumb", **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=SESSION_TIMEOUT_S,
            check=False,
        )
        output, exit_code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        exit_code = -1
    outputs, failed, notes = split_output(output)
    problems = check_answers(blocks, read_calls(workdir), outputs)
    if exit_code != 0:
        ran = [b for b in runnable if b.index in outputs]
        block = ran[-1] if ran else runnable[0]
        where = f"README.md:{failed[0]} exited {failed[1]}" if failed else f"the session exited {exit_code}"
        if exit_code == -1:
            where = f"the session ran out of its {SESSION_TIMEOUT_S} s"
        problems.setdefault(block.index, [])[:0] = [where, *notes]
    not_run = [b for b in runnable if b.index not in outputs]
    if exit_code == 0 and not_run:
        problems.setdefault(not_run[0].index, []).append("never reached")
    by_index = {b.index: b for b in blocks}
    return [
        block_report(by_index[index], outputs.get(index, output[-3000:]), found)
        for index, found in sorted(problems.items())
    ]


class _Answer(BaseHTTPRequestHandler):
    """Answers ``GET /<status>`` with that status and ``{"status": <status>}``."""

    def do_GET(self) -> None:
        status = int(self.path.strip("/"))
        body = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def answering_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_session_fails_where_an_example_fails(tmp_path: Path, answering_server: str) -> None:
    """What the harness itself must catch: a failing command, a pipeline hiding one, an answer
    other than the README's, a 4xx nobody expected; variables carry over from block to block."""
    fence = "```"
    readme = "\n".join(
        [
            "# A README",  # 1
            f"{fence}bash",  # 2
            f"URL={answering_server}",  # 3
            f"{fence}",  # 4
            f"{fence}sh",  # 5
            'curl -s $URL/202   # → 202 {"status": 202}',  # 6
            "curl -s $URL/200",  # 7
            "# → 201",  # 8
            f"{fence}",  # 9
        ]
    )
    [report] = run_readme(readme, tmp_path / "answers")
    assert "README.md:8: expected HTTP 201, the curl at line 7 got 200" in report
    assert "README.md:6" not in report.split("--- the block ---")[0]

    failing = readme.replace("# → 201", "false | cat\necho never")
    [report] = run_readme(failing, tmp_path / "pipeline")
    assert "README.md:8 exited 1" in report
    assert "never" not in report.split("--- what it printed ---")[1]

    unexpected = readme.replace("$URL/200", "$URL/422").replace("# → 201", "echo after")
    [report] = run_readme(unexpected, tmp_path / "unexpected")
    assert "README.md:7 exited 22" in report
    assert 'curl at README.md:7 answered HTTP 422 and no "# → 422" follows it' in report
    assert "after" not in report.split("--- what it printed ---")[1]

    expected_error = readme.replace("$URL/200", "$URL/409").replace("# → 201", '# → 409 {"status": 409}')
    assert run_readme(expected_error, tmp_path / "expected") == []

    # make dev's default address stands for the stack the examples run against
    default = readme.replace(f"URL={answering_server}", f"URL={DEFAULT_API}").replace("# → 201", "# → 200")
    assert run_readme(default, tmp_path / "default", api_url=answering_server) == []


@pytest.mark.timeout(SESSION_TIMEOUT_S + 300)  # make dev's start (a minute on a busy machine) + the session
def test_every_readme_example_works_when_pasted(dev_stack: DevStack, tmp_path: Path) -> None:
    reports = run_readme(README.read_text(), tmp_path, api_url=dev_stack.url)
    if reports:
        stack_tail = dev_stack.output()[-3000:]
        pytest.fail("\n\n".join([*reports, "--- make dev's terminal (last lines) ---", stack_tail]))
