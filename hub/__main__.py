"""`python -m hub card MODEL_DIR` and `python -m hub push MODEL_DIR --repo-id OWNER/NAME`."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys

from hub.card import (CARD_FILE, DEFAULT_LICENSE, PLOT_FILE, card_choices, card_for_push, folder_card_is_rendered,
                      render_card)
from hub.model_dir import ModelDirError
from hub.push import Pushed, PushError, check_repo_id, describe_push, push, stopped_push
from sigterm import CtrlC, SigtermRaises, Terminated, stopped_by

CARD_BACKUP = "README.md.bak"  # never published (model_dir.PUBLISHED_PATTERNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub", description="Model card and Hub publishing.")
    commands = parser.add_subparsers(dest="command", required=True)
    card = commands.add_parser("card", help="render MODEL_DIR/README.md from the run's results and arguments")
    card.add_argument("model_dir")
    card.add_argument("--repo-id", help="Hub id shown in the usage snippet (default: the folder name)")
    up = commands.add_parser("push", help="upload the exported model, tokenizer, card and figure in one commit")
    up.add_argument("model_dir")
    up.add_argument("--repo-id", required=True, help="<owner>/<name>")
    up.add_argument("--private", action=argparse.BooleanOptionalAction,
                    help="create the repo private, or public with --no-private (default: as the owner's settings make "
                         "new repos); a push keeps an existing repo's visibility, and --private refuses a public one")
    up.add_argument("--revision", help="branch to commit to (created if needed)")
    up.add_argument("--dry-run", action="store_true", help="print the files and the card; send nothing")
    up.add_argument("--card-as-is", action="store_true",
                    help="upload MODEL_DIR/README.md as it is (a card edited by hand), not the card rendered for the "
                         "repo")
    for command in (card, up):
        command.add_argument("--license", help=f"a licence identifier the Hub knows (default: the folder card's, else "
                                               f"{DEFAULT_LICENSE}, the licence of KorNLI, KorSTS and KLUE: set it for "
                                               "a model of other data)")
        command.add_argument("--comparison", action=argparse.BooleanOptionalAction,
                             help="the published SimCSE-KO figures as labelled rows (default: as in the folder's card, "
                                  "else on)")
    args = parser.parse_args(argv)
    args.model_dir = os.path.normpath(args.model_dir)  # "out/", as a shell completes it, is named "out" in messages

    result = None  # what push() returned, where a stop came after it
    try:
        if args.command == "card":
            if args.repo_id:  # named in the card's title and usage snippet
                check_repo_id(args.repo_id)
            card_path, backup = (os.path.join(args.model_dir, name) for name in (CARD_FILE, CARD_BACKUP))
            if not folder_card_is_rendered(args.model_dir, args.repo_id):  # edited by hand, say: not lost
                shutil.copyfile(card_path, backup)
                print(f"kept the earlier {CARD_FILE}, which is not what the run's files render (edited by hand, "
                      f"rendered before they changed, or by an earlier version), as {backup}")
            render_card(args.model_dir, args.repo_id, *card_choices(args.model_dir, args.license, args.comparison))
            print(f"wrote {card_path}")
            return 0
        if args.card_as_is and (args.license or args.comparison is not None):
            parser.error("--card-as-is uploads README.md as it is; --license and --comparison are for a rendered card")
        # The pushed card names the repo in its usage snippet; the folder's own README.md is left as it is.
        card_text = None if args.card_as_is else card_for_push(args.model_dir, args.repo_id, args.license,
                                                                args.comparison, args.revision)
        # As in the push at the end of training (run_simcse.push_export)
        with SigtermRaises(), CtrlC():
            result = push(args.model_dir, args.repo_id, args.private, args.revision, args.dry_run, card=card_text)
        if args.dry_run:
            print("files to upload:\n  " + "\n  ".join(result))
            print("(and, in the same commit, the repo's files of these kinds that this export has not are deleted)")
            if card_text is None:
                with open(os.path.join(args.model_dir, CARD_FILE), encoding="utf-8") as f:
                    card_text = f.read()
            print("\n" + card_text)
        else:
            print(describe_push(args.model_dir, args.repo_id, args.revision, result))
        return 0
    except (ModelDirError, PushError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file of the folder that cannot be read (another user's), or a card that cannot be written
        if e.filename is None:
            raise
        written = args.command == "card" and os.path.basename(e.filename) in (CARD_FILE, PLOT_FILE, CARD_BACKUP)
        hint = (f" (the card and its figure are written into the model folder: render them in a copy of "
                f"{args.model_dir} that you may write to)"
                if written and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "")
        print(f"error: {e.filename}: {e.strerror}{hint}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as e:  # push() has left the Hub as it was, or says what it made there
        signal_name, code = stopped_by(e)
        said = "stopped"
        if args.command == "push":
            said = stopped_push(args.model_dir, args.repo_id, args.revision, e,
                                result if isinstance(result, Pushed) else None)[0]
        print(f"\n{signal_name}{said}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
