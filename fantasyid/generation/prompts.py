"""Batch prompt files (CSV with a header, or JSONL) → :class:`GenerationItem` per row; a bad row is reported and
skipped, a malformed file is an error naming the line."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["GenerationItem", "read_prompt_file"]


@dataclass
class GenerationItem:
    """One video to make. ``name`` (optional) becomes the output file stem after sanitising."""

    ref: Path
    prompt: str
    seed: int | None = None
    name: str | None = None
    row: int | None = None  #: line of the prompt file it came from (for messages)
    #: position among the prompt file's rows, 0-based, bad rows counted: the number in its automatic file name, so
    #: that names never depend on which rows happened to parse
    number: int | None = None

    def where(self, index: int) -> str:
        return f"line {self.row}" if self.row is not None else f"item {index}"



def _item_from_mapping(row: dict[str, Any], base: Path, where: str) -> GenerationItem:
    ref = str(row.get("ref") or "").strip()
    prompt = str(row.get("prompt") or "").strip()
    if not ref or not prompt:
        raise InputError(f"{where}: needs both 'ref' and 'prompt'")
    seed = row.get("seed")
    if seed not in (None, ""):
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise InputError(f"{where}: seed must be an integer, got {seed!r}") from None
    else:
        seed = None
    name = row.get("name")
    ref_path = Path(ref).expanduser()
    if not ref_path.is_absolute():
        ref_path = base / ref_path
    return GenerationItem(ref=ref_path, prompt=prompt, seed=seed, name=str(name).strip() or None if name else None)


def _csv_rows(path: Path, text: str):
    """``(line, row)`` per CSV record; an unclosed quote (which would merge the following rows into one field) is an
    error naming the line where the quote opens."""
    lines = text.splitlines()
    reader = csv.DictReader(lines, strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"{path.name}:1: malformed CSV header ({exc})") from None
    if not fieldnames or not {"ref", "prompt"} <= {f.strip() for f in fieldnames}:
        raise InputError(
            f"{path}: a CSV prompt file needs a header with 'ref' and 'prompt'",
            hint="first line: ref,prompt,seed,name (seed and name optional); or use JSONL",
        )
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # strict mode: a quote still open at the end of the file, text after a quote
            if "unexpected end of data" in str(exc):
                what = f"a quote opened on line {start} is never closed"
            elif reader.reader.line_num > start:  # (DictReader.line_num is only updated after a good row)
                what = f"a quote opened on line {start} runs on to line {reader.reader.line_num} ({exc})"
            else:
                what = str(exc)
            raise InputError(
                f"{path.name}:{start}: malformed CSV: {what}",
                hint='a prompt with commas is written "a man, smiling", with "" for a quote inside it',
            ) from None
        end = reader.line_num
        if end > start:  # a quoted field ran over line ends: an unclosed quote merging rows (prompts hold no newline)
            raise InputError(
                f"{path.name}:{start}: malformed CSV: a quote opened on line {start} runs on to line {end}, merging "
                f"{end - start + 1} lines into one row",
                hint='close the quote on its line; a prompt with commas is written "a man, smiling"',
            )
        yield start, row, fieldnames


def read_prompt_file(path: str | Path) -> tuple[list[GenerationItem], list[str]]:
    """Read a batch: CSV with a header (``ref,prompt[,seed][,name]``) or JSONL (one object per line).

    Relative ``ref`` paths are relative to the prompt file. Returns the good items and a message per bad row (bad
    rows do not stop the others); a malformed file (an unclosed CSV quote) is an error naming the line. Each item
    records its line and its position among the file's rows (bad rows counted), which its file name uses.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompt file '{path}' does not exist")
    base = path.parent
    items: list[GenerationItem] = []
    bad: list[str] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        for position, (number, line) in enumerate(rows):
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise InputError(f"{where}: expected a JSON object")
                item = _item_from_mapping(row, base, where)
            except json.JSONDecodeError as exc:
                bad.append(f"{where}: not valid JSON ({exc.msg})")
                continue
            except InputError as exc:
                bad.append(exc.message)
                continue
            item.row, item.number = number, position
            items.append(item)
    else:
        for position, (number, row, fieldnames) in enumerate(_csv_rows(path, text)):
            where = f"{path.name}:{number}"
            if row.get(None):  # more fields than the header names
                bad.append(f"{where}: {len(fieldnames) + len(row[None])} fields, the header has {len(fieldnames)} "
                           '(quote a prompt that holds commas: "a man, smiling")')  # fmt: skip
                continue
            try:
                item = _item_from_mapping({k.strip(): v for k, v in row.items() if k}, base, where)
            except InputError as exc:
                bad.append(exc.message)
                continue
            item.row, item.number = number, position
            items.append(item)
    if not items and not bad:
        raise InputError(f"prompt file '{path}' has no rows")
    return items, bad

