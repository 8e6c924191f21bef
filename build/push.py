"""Upload a checked Hub folder with huggingface_hub. A dry run (the default) lists what would be sent.

    python -m build push --out OUT --repo ORG/NAME [--private] [--revision BRANCH] [--yes]

The token comes from the usual places (HF_TOKEN, `hf auth login`) and is never printed. A folder that
fails the checks of build/hubcheck.py is refused, and so is one holding a Python file. So is a build whose
hard negatives came from the fallback embedder (not the paper's SigLIP2 options) or whose items were never
reviewed, unless --allow-fallback-embedder / --allow-unreviewed says the user knows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from build import artifacts, hubcheck
from build.export import hub_folder
from spinebench import BUILD_INFO

COMMAND = "push"
HELP = "upload OUT/spinebench to the Hub (dry run unless --yes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the folder `export` wrote to (holds spinebench/)")
    parser.add_argument("--repo", required=True, help="dataset repo id, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo private (or gated by hand)")
    parser.add_argument("--revision", help="branch to push to (default: main)")
    parser.add_argument("--yes", action="store_true", help="really upload; without it, only list the files")
    parser.add_argument("--allow-fallback-embedder", action="store_true",
                        help="publish even though the hard negatives come from the weight-free fallback embedder")
    parser.add_argument("--allow-unreviewed", action="store_true",
                        help="publish even though no review decision was applied to the items")


def publication_problems(folder: Path, allow_fallback: bool, allow_unreviewed: bool) -> list[str]:
    """Why this build should not be published as SpineBench (empty: fine)."""
    path = folder / BUILD_INFO
    if not path.is_file():
        return [f"{path} missing: re-run export"]
    items = artifacts.read_json(path)["items"]
    problems = []
    if items["embedder"].startswith("fallback") and not allow_fallback:
        problems.append(f"hard negatives from {items['embedder']!r}, not SigLIP2: rebuild items with "
                        "--embedder google/siglip2-base-patch16-224 (or pass --allow-fallback-embedder)")
    if not items.get("review_decisions") and not allow_unreviewed:
        problems.append("no review decision was applied to the items: review them (`python -m build review`), "
                        "rebuild items (or pass --allow-unreviewed)")
    return problems


def plan(folder: Path) -> list[tuple[str, int]]:
    return [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


def main(args: argparse.Namespace) -> int:
    folder = hub_folder(args.out)
    result = hubcheck.check(folder)
    if not result.ok:
        print(result.summary())
        print("refused: fix the folder (re-run export) before pushing")
        return 1
    problems = publication_problems(folder, args.allow_fallback_embedder, args.allow_unreviewed)
    if problems:
        print("\n".join(f"refused: {problem}" for problem in problems))
        return 1
    files = plan(folder)
    for name, size in files:
        print(f"{size / 2**20:10.2f} MB  {name}")
    print(f"{len(files)} files, {sum(s for _, s in files) / 2**20:.1f} MB -> dataset {args.repo}"
          f"{' (private)' if args.private else ''}{f' @ {args.revision}' if args.revision else ''}")
    if not args.yes:
        print("dry run: nothing sent (add --yes to upload)")
        return 0
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(args.repo, repo_type="dataset", private=args.private, exist_ok=True)
    if args.revision:
        api.create_branch(args.repo, repo_type="dataset", branch=args.revision, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=args.repo, repo_type="dataset",
                               revision=args.revision, commit_message="Upload SpineBench build")
    print(f"uploaded: {commit}")
    return 0
