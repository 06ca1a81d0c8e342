"""``fantasyid bench fetch consisid|opens2v-human``: a protocol's public inputs (reference images and prompts) as a
``fantasyid generate --prompts`` batch file plus the protocol's manifest.

Sources (Hugging Face datasets, layouts as the authors' evaluation code reads them):

* **opens2v-human**: ``BestWishYsh/OpenS2V-Eval``: ``Human-Domain_Eval.json`` maps each case (``singleface_1`` …,
  ``singlehuman_30``) to ``img_paths`` (relative to the dataset root) and a ``prompt`` (OpenS2V-Nexus
  ``eval/run_eval.sh``: ``--input_image_folder $OPENS2V_EVAL_PATH --input_json_file
  $OPENS2V_EVAL_PATH/Human-Domain_Eval.json``; ``get_facesim.py`` joins the two). The video of a case is named
  after its key (``get_gmescore.py`` looks the prompt up by the video's stem).
* **consisid**: ``BestWishYsh/ConsisID-preview-Data``: every image of ``eval/face_images`` with every row of
  ``video_caption_eval_old.csv`` (``index, Class, Original_Prompt, Refined_man, Refined_woman``); the prompt is
  ``Refined_woman`` when the image's name holds "woman", else ``Refined_man``, with ``{class_token}`` replaced by
  ``Class``; the video is named ``{image name}--{index}`` (ConsisID ``eval/eval_all_in_once.py``).

``--source DIR`` reads a local copy with the same layout (a dataset downloaded elsewhere, or a test stand-in);
otherwise the files are downloaded with huggingface_hub (cached). Offline, one line names what is missing.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fantasyid.errors import ConfigError, InputError
from fantasyid.io import sha256_file, write_json, write_text


@dataclass(frozen=True)
class BenchSource:
    name: str
    repo_id: str
    index: str  #: the prompt index file, relative to the dataset root
    images: str  #: what the references are, for messages
    source: str  #: where the layout comes from


BENCHES: dict[str, BenchSource] = {
    "opens2v-human": BenchSource(
        "opens2v-human", "BestWishYsh/OpenS2V-Eval", "Human-Domain_Eval.json", "the images of its img_paths",
        "PKU-YuanGroup/OpenS2V-Nexus eval/run_eval.sh, eval/get_facesim.py, eval/get_gmescore.py"),
    "consisid": BenchSource(
        "consisid", "BestWishYsh/ConsisID-preview-Data", "video_caption_eval_old.csv", "eval/face_images/*",
        "PKU-YuanGroup/ConsisID eval/eval_all_in_once.py"),
}
BENCH_NAMES = tuple(BENCHES)
_IMAGE = re.compile(r"\.(png|jpe?g|webp|bmp)$", re.IGNORECASE)


@dataclass
class BenchItem:
    name: str  #: the video's file stem, as the protocol's code names it
    image: str  #: the reference, relative to the dataset root
    prompt: str
    extra: dict[str, Any]


def get_bench(name: str) -> BenchSource:
    key = str(name).strip().lower()
    if key not in BENCHES:
        raise ConfigError(f"unknown benchmark {name!r}", hint=f"use one of: {', '.join(BENCH_NAMES)}")
    return BENCHES[key]


# ----------------------------------------------------------------------------------------------------------------
# Reading the index files


def opens2v_items(index: Path) -> list[BenchItem]:
    """The cases of ``Human-Domain_Eval.json`` (one reference image each in the human domain)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {index}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InputError(f"{index}: expected a JSON object of cases (name → img_paths, prompt)")
    items = []
    for key, case in data.items():
        paths = case.get("img_paths") if isinstance(case, dict) else None
        prompt = case.get("prompt") if isinstance(case, dict) else None
        if not isinstance(paths, list) or not paths or not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{index}: case {key!r} needs img_paths (a list) and a prompt")
        extra = {"img_paths": paths, "class_label": case.get("class_label")}
        items.append(BenchItem(str(key), str(paths[0]), prompt.strip(), extra))
    return items


def consisid_items(index: Path, images: list[str]) -> list[BenchItem]:
    """Every image of ``eval/face_images`` (names relative to the dataset root) with every prompt row."""
    try:
        rows = list(csv.DictReader(index.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {index}: {exc}") from exc
    needed = {"index", "Class", "Refined_man", "Refined_woman"}
    if not rows or not needed <= set(rows[0]):
        raise InputError(f"{index}: expected the columns index, Class, Original_Prompt, Refined_man, Refined_woman")
    items = []
    for image in sorted(images, key=_natural_key):
        image_name = Path(image).name
        for row in rows:
            template = row["Refined_woman"] if "woman" in image_name else row["Refined_man"]
            prompt = template.replace("{class_token}", row["Class"]).strip()
            items.append(BenchItem(f"{image_name}--{row['index']}", image, prompt,
                                   {"class": row["Class"], "prompt_index": row["index"]}))
    return items


def _natural_key(text: str) -> list[Any]:
    """natsort's order for names like ``2_woman.png`` < ``10_man.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


# ----------------------------------------------------------------------------------------------------------------
# Getting the files


def _offline_reason() -> str:
    return "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0", "false") else ""


def _download(bench: BenchSource, patterns: list[str], what: str) -> Path:
    """The dataset snapshot holding ``patterns`` (downloaded, or from the cache); one line when it cannot be had."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(bench.repo_id, repo_type="dataset", allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001  (offline, DNS, HTTP errors: all mean the same to the user)
        text = " ".join(str(exc).split()).removeprefix("Got: ").split(" An error happened")[0]
        why = _offline_reason() or text[:120] or type(exc).__name__
        raise InputError(
            f"cannot download {what} of {bench.name} from the Hugging Face dataset {bench.repo_id} ({why})",
            hint=f"on a machine with internet run `hf download {bench.repo_id} --repo-type dataset --local-dir "
            f"{bench.repo_id.split('/')[1]}`, copy that folder here and pass --source FOLDER",
        ) from exc


def _collect(bench: BenchSource, source: Path | None) -> tuple[Path, list[BenchItem], str]:
    """(dataset root, items, where from). Every file an item needs exists under the root, else one line."""
    if source is not None and not source.is_dir():
        raise InputError(f"--source {source} is not a folder")
    root = source if source is not None else _download(bench, [bench.index], bench.index)
    index = root / bench.index
    if not index.is_file():
        raise InputError(f"{bench.name}: {bench.index} is missing from {root}",
                         hint=f"--source must be a copy of the dataset {bench.repo_id} (its root folder)")
    if bench.name == "opens2v-human":
        items = opens2v_items(index)
        if source is None:
            root = _download(bench, sorted({i.image for i in items}), f"the {len(items)} reference images")
    else:
        if source is None:
            root = _download(bench, [bench.index, "eval/face_images/*"], "eval/face_images")
        folder = root / "eval" / "face_images"
        images = [f"eval/face_images/{p.name}" for p in folder.iterdir() if _IMAGE.search(p.name)] \
            if folder.is_dir() else []
        if not images:
            raise InputError(f"consisid: no reference image in {folder}",
                             hint=f"--source must be a copy of the dataset {bench.repo_id} with eval/face_images")
        items = consisid_items(index, images)
    missing = sorted({i.image for i in items if not (root / i.image).is_file()})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(f"{bench.name}: {len(missing)} of {len({i.image for i in items})} reference images are "
                         f"missing from {root}: {shown}",
                         hint=f"copy the whole dataset {bench.repo_id} (hf download {bench.repo_id} --repo-type dataset)")
    where = str(source) if source is not None else f"huggingface dataset {bench.repo_id}"
    return root, items, where


def fetch_bench(name: str, out: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write ``out/refs/…`` (the reference images), ``out/prompts.jsonl`` (a ``generate --prompts`` batch: ``ref``
    relative to it, ``prompt``, ``name``) and ``out/manifest.json`` (the protocol, the source, each item with its
    reference's sha256). Returns the paths written."""
    bench = get_bench(name)
    out = Path(out).expanduser()
    root, items, where = _collect(bench, Path(source).expanduser() if source is not None else None)
    refs = out / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    copied: dict[str, str] = {}
    lines, entries = [], []
    for item in items:
        if item.image not in copied:
            target = refs / item.image.replace("/", "__")  # flat, and unique (the dataset's path spelled out)
            shutil.copyfile(root / item.image, target)
            copied[item.image] = target.name
        ref = f"refs/{copied[item.image]}"
        lines.append(json.dumps({"ref": ref, "prompt": item.prompt, "name": item.name}, ensure_ascii=False))
        entries.append({"name": item.name, "ref": ref, "source_image": item.image, "prompt": item.prompt,
                        "ref_sha256": sha256_file(refs / copied[item.image]), **item.extra})
    batch = write_text(out / "prompts.jsonl", "\n".join(lines) + "\n")
    manifest = write_json(out / "manifest.json", {
        "protocol": bench.name, "dataset": bench.repo_id, "fetched_from": where, "index": bench.index,
        "layout_source": bench.source, "videos": len(items), "references": len(copied),
        "evaluate": f"fantasyid generate --prompts {batch.name} --out runs/NAME; then fantasyid eval runs/NAME "
        f"--protocol {bench.name}",
        "items": entries,
    })
    return {"prompts": batch, "manifest": manifest, "refs": refs}
