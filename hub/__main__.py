"""`python -m hub card MODEL_DIR` and `python -m hub push MODEL_DIR --repo-id OWNER/NAME`."""

from __future__ import annotations

import argparse
import sys

from hub.card import render_card
from hub.model_dir import ModelDirError
from hub.push import PushError, push


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub", description="Model card and Hub publishing.")
    commands = parser.add_subparsers(dest="command", required=True)
    card = commands.add_parser("card", help="render MODEL_DIR/README.md from the run's results and arguments")
    card.add_argument("model_dir")
    card.add_argument("--repo-id", help="Hub id shown in the usage snippet (default: the folder name)")
    card.add_argument("--license", default="cc-by-sa-4.0")
    card.add_argument("--no-comparison", action="store_true", help="leave out the published SimCSE-KO rows")
    up = commands.add_parser("push", help="upload the exported model, tokenizer, card and figure in one commit")
    up.add_argument("model_dir")
    up.add_argument("--repo-id", required=True, help="<owner>/<name>")
    up.add_argument("--private", action="store_true",
                    help="create the repo private; an existing public repo is refused (a push keeps its visibility)")
    up.add_argument("--revision", help="branch to commit to (created if needed)")
    up.add_argument("--dry-run", action="store_true", help="print the files and the card; send nothing")
    up.add_argument("--license", default="cc-by-sa-4.0")
    up.add_argument("--no-comparison", action="store_true", help="leave out the published SimCSE-KO rows")
    args = parser.parse_args(argv)

    try:
        if args.command == "card":
            render_card(args.model_dir, args.repo_id, args.license, not args.no_comparison)
            print(f"wrote {args.model_dir}/README.md")
            return 0
        # The pushed card names the repo in its usage snippet; the folder's own README.md is left as it is.
        card_text = str(render_card(args.model_dir, args.repo_id, args.license, not args.no_comparison, write=False))
        result = push(args.model_dir, args.repo_id, args.private, args.revision, args.dry_run, card=card_text)
        if args.dry_run:
            print("files to upload:\n  " + "\n  ".join(result))
            print("\n" + card_text)
        else:
            print(f"pushed {args.model_dir} to {args.repo_id}: {result}")
        return 0
    except (ModelDirError, PushError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
