"""One source per fact: role variables are documented in ``meta/argument_specs.yml``.

A role's README says what the role is for, how it works, the decisions behind it and
examples; the variables, their types, defaults and meaning live in the argument spec
(``ansible-doc -t role mlops.stack.ROLE`` shows them). A table in a README listing
variables with their defaults is a second copy that drifts (it once said 5000 for a
port whose default was 5005), so:

* no Markdown table row in a role's README may name one of the role's variables in
  its first cell;
* every option of every argument spec (nested ones too) has a description, so the
  spec really is the place to look.

Covers the collection's roles and the site roles under ``roles/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE_DIRS = (ROOT / "collections/ansible_collections/mlops/stack/roles", ROOT / "roles")

# the delimiter row under a table's header: | --- | :---: | ---: |
DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
BACKTICKED = re.compile(r"`([^`]+)`")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def roles() -> list[Path]:
    return sorted(p.parent for d in ROLE_DIRS for p in d.glob("*/tasks"))


def readmes() -> list[Path]:
    return [role / "README.md" for role in roles() if (role / "README.md").is_file()]


def spec_files() -> list[Path]:
    return [
        role / "meta/argument_specs.yml"
        for role in roles()
        if (role / "meta/argument_specs.yml").is_file()
    ]


def first_cell(row: str) -> str:
    """The first cell of a table row; a pipe inside backticks or escaped as \\| does
    not end it."""
    text = row.strip()
    if text.startswith("|"):
        text = text[1:]
    cell, in_code, escaped = [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "`":
            in_code = not in_code
        elif char == "|" and not in_code:
            break
        cell.append(char)
    return "".join(cell).strip()


def table_rows(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, line) of every row of every Markdown table, header included;
    tables inside fenced code blocks are code, not tables."""
    in_fence = False
    in_table = False
    for index, line in enumerate(lines):
        if FENCE.match(line):
            in_fence, in_table = not in_fence, False
            continue
        if in_fence:
            continue
        if in_table:
            if line.strip() and "|" in line:
                yield index + 1, line
                continue
            in_table = False
        if (
            "|" in line
            and DELIMITER_ROW.match(line)
            and index > 0
            and "|" in lines[index - 1]
            and not FENCE.match(lines[index - 1])
        ):
            in_table = True
            yield index, lines[index - 1]  # the header, one line up


def variables_named(cell: str, prefix: str, options: set[str]) -> list[str]:
    names = []
    for code in BACKTICKED.findall(cell):
        for token in IDENTIFIER.findall(code):
            if token.startswith(prefix) or token in options:
                names.append(token)
    return names


def walk_options(options: dict[str, Any] | None, path: str) -> Iterator[tuple[str, Any]]:
    for name, spec in (options or {}).items():
        yield f"{path}.{name}", spec
        yield from walk_options((spec or {}).get("options"), f"{path}.{name}")


def spec_options(role: Path) -> set[str]:
    path = role / "meta/argument_specs.yml"
    if not path.is_file():
        return set()
    specs = yaml.safe_load(path.read_text())["argument_specs"]
    return {name for spec in specs.values() for name in (spec.get("options") or {})}


def has_text(description: Any) -> bool:
    if isinstance(description, str):
        return bool(description.strip())
    if isinstance(description, list):
        return bool(description) and all(isinstance(d, str) and d.strip() for d in description)
    return False


def test_the_roles_are_found() -> None:
    names = {readme.parent.name for readme in readmes()}
    assert {"gateway", "grafana", "mlflow_server", "node_exporter", "predictor", "prometheus"} <= (
        names
    ), names
    assert len(spec_files()) == len(roles()), "a role without meta/argument_specs.yml"


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.parent.name)
def test_readme_has_no_variable_table(readme: Path) -> None:
    role = readme.parent
    prefix = f"{role.name}_"
    options = spec_options(role)
    lines = readme.read_text().splitlines()
    found = [
        f"{readme.relative_to(ROOT)}:{number}: {', '.join(names)}"
        for number, line in table_rows(lines)
        if (names := variables_named(first_cell(line), prefix, options))
    ]
    assert not found, (
        "variables of the role in a README table (document them in meta/argument_specs.yml, "
        "the README keeps purpose, examples and decisions):\n" + "\n".join(found)
    )


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.parent.name)
def test_readme_points_to_the_argument_spec(readme: Path) -> None:
    assert "meta/argument_specs.yml" in readme.read_text(), (
        f"{readme.relative_to(ROOT)} does not say its variables are in meta/argument_specs.yml"
    )


@pytest.mark.parametrize("spec_file", spec_files(), ids=lambda p: p.parent.parent.name)
def test_every_option_has_a_description(spec_file: Path) -> None:
    specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
    missing = [
        path
        for entry_point, spec in specs.items()
        for path, option in walk_options(spec.get("options"), entry_point)
        if not has_text((option or {}).get("description"))
    ]
    assert not missing, f"{spec_file.relative_to(ROOT)}: options without a description: {missing}"


# The checker itself, on small samples.
SAMPLE = """\
# r

| variable | default |
|---|---|
| `r_port` / `r_host` | `1` |
| `other` | `r_port` in the second cell is fine |

```
| `r_port` | in a code block |
|---|---|
```

a | b
--|--
`r_user` | x
still the table | `r_port` in the second cell
"""


def test_the_checker_finds_rows_naming_variables() -> None:
    lines = SAMPLE.splitlines()
    hits = [
        (number, variables_named(first_cell(line), "r_", set()))
        for number, line in table_rows(lines)
    ]
    assert [(n, names) for n, names in hits if names] == [
        (5, ["r_port", "r_host"]),
        (15, ["r_user"]),
    ]


def test_first_cell_ignores_pipes_in_code_and_escaped() -> None:
    assert first_cell("| `a | b` | c |") == "`a | b`"
    assert first_cell(r"| a \| b | c |") == r"a \| b"
    assert first_cell("a | b") == "a"
