"""Publish a finished run folder to the Hugging Face Hub (model card + timm-layout model + report), or preview its card.

    python publish.py runs/r152 --repo_id user/plants-r152                 # public, branch main
    python publish.py runs/r152 --repo_id user/plants-r152 --private --revision exp1 --dataset_id user/plants
    python publish.py runs/r152 --repo_id user/plants-r152 --dry_run       # writes runs/r152/README.md only

The token comes from HF_TOKEN or `hf auth login` (never a flag). Re-running the same command is safe: unchanged files
are not uploaded again and no empty commit is made. Exit code 0 on success, 1 if the push failed (the message says
why and how to retry), 2 for a bad command line or an unfinished run folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from foldertune import hub


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output_dir", help="A train_hf.py output_dir (model.safetensors + config.json at least).")
    p.add_argument("--repo_id", required=True, help="user/name or org/name (a bare name: the token owner's).")
    p.add_argument("--private", action="store_true", help="Create the repo private (an existing repo keeps its "
                                                          "visibility).")
    p.add_argument("--revision", default=None, help="Branch to commit to; created from main when missing.")
    p.add_argument("--commit_message", default=None, help="Default: 'Upload <run name> (foldertune)'.")
    p.add_argument("--dataset_id", default=None, help="Hub dataset the images came from (card link + metadata).")
    p.add_argument("--license", default=None, help="Licence for the card. Default: the base checkpoint's, else "
                                                   "'unknown'.")
    p.add_argument("--base_model", default=None, help="Hub id of the base checkpoint when it was loaded from a "
                                                      "local folder that does not name it.")
    p.add_argument("--timeout", type=float, default=hub.DEFAULT_TIMEOUT_S,
                   help="Seconds per network operation before giving up.")
    p.add_argument("--dry_run", action="store_true", help="Render output_dir/README.md and list the files; no upload.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not os.path.isdir(args.output_dir):
        print(f"error: {args.output_dir} is not a folder", file=sys.stderr)
        return 2
    request = hub.PushRequest(repo_id=args.repo_id, private=args.private, revision=args.revision,
                              commit_message=args.commit_message)
    if args.dry_run:
        card = hub.render_card(args.output_dir, repo_id=args.repo_id, dataset_id=args.dataset_id,
                               license_=args.license, base_model=args.base_model)
        with open(os.path.join(args.output_dir, "README.md"), "w") as f:
            f.write(card)
        print("\n".join(["would upload:"] + [f"  {rel}" for rel in hub.published_files(args.output_dir)]))
        return 0
    try:
        url = hub.publish(args.output_dir, request, dataset_id=args.dataset_id, license_=args.license,
                          base_model=args.base_model, timeout=args.timeout)
    except hub.PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, hub.IncompleteRunError) else 1
    print(f"published: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
