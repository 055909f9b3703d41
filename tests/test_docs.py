"""The documentation cannot rot: every `mmtok ...` command line in README.md and docs/**/*.md parses against the
real CLI (each subcommand exists, each option exists for that subcommand, no surplus arguments), every relative
link and image resolves to a file (and its #anchor to a heading of a Markdown file), and README.md stays a short
front page. Nothing is executed; the Typer app is introspected (importing it imports no torch)."""
from __future__ import annotations

import difflib
import functools
import re
import shlex
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 160
SKIPPED_FENCE_LANGUAGES = {"python", "py", "yaml", "yml", "json", "toml", "text", "txt"}


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------ the CLI, introspected


@functools.lru_cache(maxsize=None)
def cli():
    """The real command tree: the click-like Group Typer builds from mmtok's app (Typer vendors its own click)."""
    import typer

    from mmtok.cli.main import app

    return typer.main.get_command(app)


def _is_option(param) -> bool:
    return getattr(param, "param_type_name", type(param).__name__.lower()) == "option" or "Option" in type(param).__name__


def _options(command) -> dict[str, object]:
    """Option name (every spelling, e.g. --no-ema, -h) -> its param; the help option is not among `params`."""
    found = {}
    for param in command.params:
        if _is_option(param):
            for name in (*param.opts, *getattr(param, "secondary_opts", ())):
                found[name] = param
    return found


def _takes_value(param) -> int:
    """How many words follow the option: 0 for flags (incl. --x/--no-x pairs and counters)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False) or getattr(param, "secondary_opts", ()):
        return 0
    return max(int(getattr(param, "nargs", 1) or 1), 1)


def _max_arguments(command) -> float:
    total = 0.0
    for param in command.params:
        if not _is_option(param):
            n = getattr(param, "nargs", 1)
            total += float("inf") if n is None or n < 0 else n
    return total


_NUMBER = re.compile(r"^-\d")


def check_command(words: list[str]) -> list[str]:
    """Problems with one command line given as words (`words[0] == "mmtok"`), as click would see them: an unknown
    subcommand, an option the subcommand does not have, an option missing its value, too many arguments. Values in
    CAPS or <angle brackets> are just words here, so placeholders are fine. An empty list means it parses."""
    assert words and words[0] == "mmtok", words
    root = cli()
    help_names = set((root.context_settings or {}).get("help_option_names", ["--help"]))
    command, path, i = root, ["mmtok"], 1
    problems: list[str] = []
    positional = 0
    only_arguments = False
    while i < len(words):
        word = words[i]
        i += 1
        if not only_arguments and word == "--":
            only_arguments = True
            continue
        if not only_arguments and word.startswith("-") and len(word) > 1 and not _NUMBER.match(word):
            name, has_value, _ = word.partition("=")
            options = _options(command)
            help_names |= set((command.context_settings or {}).get("help_option_names", ()))
            if name in help_names:
                continue
            if name not in options:
                close = difflib.get_close_matches(name, [*options, *help_names], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                have = ", ".join(sorted(options)) or "none"
                problems.append(f"`{' '.join(path)}` has no option {name}{hint}; its options: {have}")
                if not has_value and i < len(words) and not words[i].startswith("-"):
                    i += 1  # its value, presumably: not reported again as a surplus argument
                continue
            need = _takes_value(options[name])
            if has_value:
                if need == 0:
                    problems.append(f"`{' '.join(path)} {name}` is a flag and takes no value")
                need -= 1
            if i + need > len(words):
                problems.append(f"`{' '.join(path)} {name}` needs a value")
            i += max(need, 0)
            continue
        sub = getattr(command, "commands", None)
        if sub is not None and positional == 0:  # a group: the word names a subcommand
            if word not in sub:
                close = difflib.get_close_matches(word, list(sub), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"`{' '.join(path)}` has no command {word!r}{hint}; its commands: "
                                f"{', '.join(sorted(sub))}")
                return problems
            command, path = sub[word], [*path, word]
            continue
        positional += 1
        if positional > _max_arguments(command):
            problems.append(f"`{' '.join(path)}` takes at most {int(_max_arguments(command))} argument(s); "
                            f"{word!r} is one too many")
    return problems


# ------------------------------------------------------------------------------------------ command lines in docs

_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", "|&", ";;"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")


def _strip_comment(line: str) -> str:
    """`line` without a shell comment: a # at the start of a word, outside quotes (so `NAME#k` stays)."""
    quote = None
    for k, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"":
            quote = c
        elif c == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def shell_commands(text: str, pipes: bool = True) -> list[list[str]]:
    """The `mmtok ...` commands in one shell line, as words: split at &&, ||, ;, | (when `pipes`: in inline code
    `A|B` is usually a placeholder's alternatives), subshell parentheses and redirections; leading `$ ` prompts and
    `NAME=value` environment prefixes are skipped. Raises ValueError for unbalanced quotes."""
    text = _strip_comment(text.strip())
    if text.startswith("$ "):
        text = text[2:]
    lexer = shlex.shlex(text, posix=True, punctuation_chars="();<>|&" if pipes else "();<>&")
    lexer.whitespace_split = True
    lexer.commenters = ""
    segments, current = [], []
    words = list(lexer)
    k = 0
    while k < len(words):
        word = words[k]
        if word in _SEPARATORS or (not pipes and word in {"&&", ";"}):
            segments.append(current)
            current = []
        elif word[0] in "<>" and set(word) <= set("<>&|"):  # a redirection: drop `2` in `2>&1` and the target
            if current and current[-1].isdigit():
                current.pop()
            k += 1
        else:
            current.append(word)
        k += 1
    segments.append(current)
    found = []
    for segment in segments:
        while segment and _ASSIGNMENT.match(segment[0]):
            segment = segment[1:]
        if segment and segment[0] == "mmtok":
            found.append(segment)
    return found


def command_lines(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number, text, words) of every `mmtok ...` command in a Markdown file: in fenced code blocks (shell
    lines joined across trailing backslashes, after `&&` or `$ ` too) and in inline code spans that start with
    `mmtok `. A line whose quoting does not parse is returned with words == [] (and reported)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[tuple[int, str, list[str]]] = []
    fence, language, paragraph = None, "", []  # paragraph: (line number, text) of the current prose block

    def flush_paragraph():
        if not paragraph:
            return
        text = "\n".join(t for _, t in paragraph)
        starts = [0]
        for _, t in paragraph:
            starts.append(starts[-1] + len(t) + 1)
        for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, flags=re.S):
            span = " ".join(m.group(2).split())
            if span == "mmtok" or span.startswith("mmtok "):
                line = paragraph[max(j for j, s in enumerate(starts[:-1]) if s <= m.start())][0]
                try:
                    for words in shell_commands(span, pipes=False):
                        found.append((line, span, words))
                except ValueError:
                    found.append((line, span, []))
        paragraph.clear()

    k = 0
    while k < len(lines):
        line = lines[k]
        m = _FENCE.match(line)
        if fence is None and m:
            flush_paragraph()
            fence, language = m.group(1), m.group(2).lower()
            k += 1
            continue
        if fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
                k += 1
                continue
            if language in SKIPPED_FENCE_LANGUAGES:
                k += 1
                continue
            start, text = k + 1, line
            while text.rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text.rstrip()[:-1] + " " + lines[k].strip()
            if re.search(r"(^|[\s;&|(`$])mmtok(\s|$)", text):
                try:
                    for words in shell_commands(text):
                        found.append((start, " ".join(text.split()), words))
                except ValueError:
                    found.append((start, " ".join(text.split()), []))
            k += 1
            continue
        if line.strip():
            paragraph.append((k + 1, line))
        else:
            flush_paragraph()
        k += 1
    flush_paragraph()
    return found


def command_problems(paths) -> list[str]:
    problems = []
    for path in paths:
        for line, text, words in command_lines(path):
            where = f"{_rel(path)}:{line}: `{text}`"
            if not words:
                problems.append(f"{where}: the shell quoting does not parse")
                continue
            problems += [f"{where}: {p}" for p in check_command(words)]
    return problems


# ------------------------------------------------------------------------------------------ links

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces ->
    hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _outside_fences(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        out.append((k, line))
    return out


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code spans blanked out."""
    return [(k, re.sub(r"(`+)(.+?)\1", lambda s: " " * len(s.group(0)), line)) for k, line in _outside_fences(path)]


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    ids = set()
    for _, line in _outside_fences(path):
        h = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if h:
            base = github_anchor(h.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            ids.add(base if n == 0 else f"{base}-{n}")
    return frozenset(ids)


def link_problems(paths) -> list[str]:
    """Every relative link or image target that names no file, and every #anchor into a Markdown file that names
    no heading there. http(s), mailto and other schemes are not checked."""
    problems = []
    for path in paths:
        for line, text in _prose(path):
            targets = [m.group(1) for m in _LINK.finditer(text)]
            ref = _REFERENCE.match(text)
            if ref:
                targets.append(ref.group(1))
            for target in targets:
                if _SCHEME.match(target) or target.startswith("//"):
                    continue
                file_part, _, anchor = target.partition("#")
                resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
                where = f"{_rel(path)}:{line}: link ({target})"
                if not resolved.exists():
                    problems.append(f"{where}: {_rel(resolved)} does not exist")
                elif anchor and resolved.suffix == ".md" and resolved.is_file() and anchor not in anchors(resolved):
                    problems.append(f"{where}: {_rel(resolved)} has no heading with anchor #{anchor}")
    return problems


# ------------------------------------------------------------------------------------------ the tests


def test_every_documented_command_line_parses_against_the_cli():
    problems = command_problems(doc_files())
    assert not problems, "documented commands that the CLI does not accept:\n" + "\n".join(problems)


def test_the_docs_are_actually_scanned():
    """Guard against a collector that silently finds nothing."""
    readme = [" ".join(w) for _, _, w in command_lines(ROOT / "README.md")]
    assert "mmtok train quickstart" in readme, readme
    everything = [w for p in doc_files() for _, _, w in command_lines(p)]
    assert len(everything) >= 40, len(everything)
    paths = {tuple(w[:3]) for w in everything}
    assert ("mmtok", "lm", "extend") in {p[:3] for p in paths}
    assert len(doc_files()) >= 10


def test_every_relative_link_resolves():
    problems = link_problems(doc_files())
    assert not problems, "broken relative links:\n" + "\n".join(problems)


def test_readme_is_a_short_front_page():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, more than {README_MAX_LINES}: move detail into docs/"


def test_readme_keeps_the_ci_test_command():
    """.ci/run runs "README, command 2" as it is written here."""
    assert 'pip install -e ".[dev]" && python -m pytest -q' in (ROOT / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ the checkers themselves


@pytest.mark.parametrize("line,expected", [
    ("mmtok trian", "has no command 'trian' (did you mean 'train'?)"),
    ("mmtok train --no-such-flag", "`mmtok train` has no option --no-such-flag"),
    ("mmtok train quickstart --max-step 5", "has no option --max-step (did you mean --max-steps?)"),
    ("mmtok lm extnd --llm x", "`mmtok lm` has no command 'extnd'"),
    ("mmtok lm generate RUN --cfg 3 --graphs", "`mmtok lm generate` has no option --graphs"),
    ("mmtok eval runs/a runs/b", "takes at most 1 argument(s); 'runs/b' is one too many"),
    ("mmtok export runs/a --out", "`mmtok export` has no option --out"),
    ("mmtok train quickstart --set", "`mmtok train --set` needs a value"),
    ("mmtok runs --json=yes", "`mmtok runs --json` is a flag and takes no value"),
    ("mmtok --verison", "`mmtok` has no option --verison (did you mean --version?)"),
])
def test_the_checker_reports_bad_commands(line, expected):
    (words,) = shell_commands(line)
    problems = check_command(words)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "mmtok train quickstart --set optim.lr=1e-3 --set model.quantizer.codebook_size=4096 --max-steps 2000",
    "mmtok train --resume --out runs/a --max-steps=2000",
    "mmtok --version",
    "mmtok train -h",
    "mmtok lm extend --help",
    "mmtok eval RUN --data <folder> --classifier none --no-ema",
    "mmtok encode BUNDLE a.png b.png c.png --out ids.npy --device gpu:1",
    "mmtok lm generate runs/lm --prompt 'A tiger.' --cfg -1 --top-k 100",
    "mmtok data pack SRC 'shards/x-%06d.tar' --val-fraction 0.05",
    "mmtok lm",
])
def test_the_checker_accepts_good_commands(line):
    (words,) = shell_commands(line)
    assert check_command(words) == []


def test_shell_lines_are_split_into_their_mmtok_commands():
    assert shell_commands('pip install -e . && mmtok train quickstart   # trains, ~3 min') == [
        ["mmtok", "train", "quickstart"]]
    assert shell_commands("mmtok --version; mmtok train -h") == [["mmtok", "--version"], ["mmtok", "train", "-h"]]
    assert shell_commands("$ CUDA_VISIBLE_DEVICES=0,1 FOO=1 mmtok runs --json | head -3") == [
        ["mmtok", "runs", "--json"]]
    assert shell_commands("mmtok train x 2>&1 > log.txt") == [["mmtok", "train", "x"]]
    assert shell_commands("mmtok eval RUN#2 --data demo") == [["mmtok", "eval", "RUN#2", "--data", "demo"]]
    assert shell_commands("mmtok tokenize B --data FOLDER|SHARDS", pipes=False) == [
        ["mmtok", "tokenize", "B", "--data", "FOLDER|SHARDS"]]
    assert shell_commands("python -m pytest -q; echo mmtok") == []


def test_markdown_commands_are_found_and_bad_ones_named_with_file_and_line(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(
        "# Title\n"
        "\n"
        "Run `mmtok trian quickstart` first, then `mmtok.load(path)` (not a command).\n"
        "\n"
        "```bash\n"
        "pip install -e . && mmtok train quickstart \\\n"
        "    --no-such-flag 1   # continued\n"
        "$ mmtok runs --json\n"
        "```\n"
        "\n"
        "```python\n"
        "mmtok --nonsense  # python blocks are not shell\n"
        "```\n"
        "\n"
        "An inline span across lines: `mmtok lm\n"
        "generat RUN`.\n", encoding="utf-8")
    found = [(line, words) for line, _, words in command_lines(doc)]
    assert found == [(3, ["mmtok", "trian", "quickstart"]),
                     (6, ["mmtok", "train", "quickstart", "--no-such-flag", "1"]),
                     (8, ["mmtok", "runs", "--json"]),
                     (15, ["mmtok", "lm", "generat", "RUN"])]
    problems = command_problems([doc])
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{doc}:3: `mmtok trian quickstart`: ") and "'trian'" in problems[0]
    assert problems[1].startswith(f"{doc}:6: ") and "--no-such-flag" in problems[1]
    assert problems[2].startswith(f"{doc}:15: ") and "'generat'" in problems[2]


def test_the_link_checker_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with punctuation!\n", encoding="utf-8")
    doc = tmp_path / "page.md"
    doc.write_text(
        "# Page\n"
        "[ok](other.md) [ok](other.md#a-code-heading-with-punctuation) [ok](#page) ![img](other.md)\n"
        "[web](https://example.com/x.md) [mail](mailto:a@b.c) `[not a link](nowhere.md)`\n"
        "[gone](missing.md)\n"
        "[bad anchor](other.md#no-such-heading)\n"
        "```\n[in code](nowhere.md)\n```\n", encoding="utf-8")
    problems = link_problems([doc])
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{doc}:4: link (missing.md)") and "does not exist" in problems[0]
    assert problems[1].startswith(f"{doc}:5: link (other.md#no-such-heading)") and "#no-such-heading" in problems[1]
