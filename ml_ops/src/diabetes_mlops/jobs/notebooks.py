"""Reading Databricks source-format notebooks: their cells, the widgets they declare, the step
they run.

All of it is read from the source (not by running it), so job specs, and the parameter values
they pass, can be checked against the notebooks they schedule without Spark, MLflow or a
workspace.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from diabetes_mlops.runtime.errors import InputRefused

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"
WIDGET_KINDS = ("text", "dropdown", "combobox", "multiselect")


class NotebookError(InputRefused, ValueError):
    """A notebook the tools cannot use; the message names the file and line."""


@dataclass(frozen=True)
class Cell:
    first_line: int  # 1-based line of the cell's first source line in the file
    source: str
    magic: str | None = None  # "%md", "%pip", ... for MAGIC cells, None for Python


@dataclass(frozen=True)
class Widget:
    name: str
    default: str
    kind: str
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """An empty default means the job must pass a value (by convention of this project)."""
        return self.default == ""


@dataclass
class Notebook:
    path: Path
    cells: list[Cell]
    widgets: dict[str, Widget] = field(default_factory=dict)
    # The names in its `run_step(<step>, dbutils)` calls: the steps whose parameters it takes.
    steps: list[str] = field(default_factory=list)


def parse_notebook(path: str | Path) -> Notebook:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotebookError(f"{path}: cannot read notebook: {exc.strerror}") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise NotebookError(f"{path}:1: not a Databricks source notebook (first line {HEADER!r})")
    cells: list[Cell] = []
    start, chunk = 2, []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() == SEPARATOR:
            cells.append(_cell(start, chunk))
            start, chunk = number + 1, []
        else:
            chunk.append(line)
    cells.append(_cell(start, chunk))
    cells = [c for c in cells if c.source.strip()]
    notebook = Notebook(path, cells)
    for cell in cells:
        if cell.magic is None:
            tree = _parse(path, cell)
            for widget in _widgets(path, cell, tree):
                notebook.widgets[widget.name] = widget
            notebook.steps += _steps(tree)
    return notebook


def _cell(first_line: int, lines: list[str]) -> Cell:
    code = [line for line in lines if line.strip()]
    if code and all(line.startswith(MAGIC) for line in code):
        body = [line[len(MAGIC) :].removeprefix(" ") for line in lines]
        magic = next(line for line in body if line.strip()).split()[0]
        return Cell(first_line, "\n".join(body), magic if magic.startswith("%") else "%python")
    return Cell(first_line, "\n".join(lines))


def _parse(path: Path, cell: Cell) -> ast.AST:
    try:
        return ast.parse(cell.source, filename=str(path))
    except SyntaxError as exc:
        line = cell.first_line + (exc.lineno or 1) - 1
        raise NotebookError(f"{path}:{line}: syntax error: {exc.msg}") from None


def _steps(tree: ast.AST) -> list[str]:
    """`run_step(train, dbutils)` or `steps.run_step(steps.train, dbutils)` -> ["train"]."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "run_step" and node.args:
            step = _name(node.args[0])
            if step is not None:
                found.append(step)
    return found


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _widgets(path: Path, cell: Cell, tree: ast.AST) -> list[Widget]:
    found = []
    for node in ast.walk(tree):
        kind = _widget_kind(node)
        if kind is None:
            continue
        line = cell.first_line + node.lineno - 1
        arguments = _arguments(node, kind)
        try:
            values = {key: ast.literal_eval(value) for key, value in arguments.items()}
        except ValueError:
            raise NotebookError(
                f"{path}:{line}: widget arguments must be literals so specs can be checked"
            ) from None
        if not isinstance(values.get("name"), str) or not isinstance(values.get("default"), str):
            raise NotebookError(f"{path}:{line}: a widget needs a name and a string default")
        found.append(
            Widget(values["name"], values["default"], kind, tuple(values.get("choices", ())))
        )
    return found


def _widget_kind(node: ast.AST) -> str | None:
    """`dbutils.widgets.<kind>(...)` -> kind."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    owner = node.func.value
    if (
        node.func.attr in WIDGET_KINDS
        and isinstance(owner, ast.Attribute)
        and owner.attr == "widgets"
        and isinstance(owner.value, ast.Name)
        and owner.value.id == "dbutils"
    ):
        return node.func.attr
    return None


def _arguments(node: ast.Call, kind: str) -> dict[str, ast.AST]:
    names = ["name", "default"] + (["choices"] if kind != "text" else [])
    arguments = dict(zip(names, node.args, strict=False))
    aliases = {"name": "name", "defaultValue": "default", "choices": "choices"}
    for keyword in node.keywords:
        if keyword.arg in aliases:
            arguments[aliases[keyword.arg]] = keyword.value
    return arguments
