"""Upload a checked Hub folder with huggingface_hub. A dry run (the default) lists what would be sent.

    python -m build push --out OUT --repo ORG/NAME [--private] [--revision BRANCH] [--yes]

The token comes from the usual places (HF_TOKEN, `hf auth login`) and is never printed. A folder that
fails the checks of build/hubcheck.py is refused, and so is one holding a Python file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from build import hubcheck
from build.export import hub_folder

COMMAND = "push"
HELP = "upload OUT/spinebench to the Hub (dry run unless --yes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the folder `export` wrote to (holds spinebench/)")
    parser.add_argument("--repo", required=True, help="dataset repo id, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo private (or gated by hand)")
    parser.add_argument("--revision", help="branch to push to (default: main)")
    parser.add_argument("--yes", action="store_true", help="really upload; without it, only list the files")


def plan(folder: Path) -> list[tuple[str, int]]:
    return [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


def main(args: argparse.Namespace) -> int:
    folder = hub_folder(args.out)
    result = hubcheck.check(folder)
    if not result.ok:
        print(result.summary())
        print("refused: fix the folder (re-run export) before pushing")
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
