"""Publish an exported model folder to the Hugging Face Hub in one commit.

The token comes from the usual places (`HF_TOKEN`, `hf auth login`) through `huggingface_hub`; it is never printed
or written. Only `model_dir.published_files` are sent (never checkpoints, optimizer states or training_args.bin), and
the repo's files of those kinds that the export has not (an earlier export's) are deleted in the same commit.
The commit is atomic on the Hub, so a failed push leaves the repo as it was (a repo this push created is deleted
again); transient HTTP errors are retried. It is made on the branch's last commit as the push found it: where another
push landed in between, the Hub refuses it, rather than leave the two exports' files mixed. The large files are
uploaded first; a stop (Ctrl-C, SIGTERM) during the commit request that follows waits for the Hub's answer, so that
`stopped_push` says truly what the stop left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from typing import NamedTuple

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import parse_ratelimit_headers

from data_sources import hub_page_hint, is_repo_id
from hub.model_dir import check_export, is_published, load_results, published_files
from sigterm import StopsHeld

try:  # the HTTP client under huggingface_hub: httpx2 from 2.0, httpx before
    from httpx2 import TransportError
except ImportError:  # pragma: no cover
    from httpx import TransportError

logger = logging.getLogger(__name__)
NETWORK_ERRORS = (TransportError, ConnectionError, TimeoutError)  # no HTTP answer: unreachable, dropped, timed out
# What `git check-ref-format --branch` refuses in a branch name (the Hub's branches are git's): a leading "-", a part
# that starts with "." or ends with ".lock", "..", "//", "@{", a leading or trailing "/", a trailing ".", spaces,
# control characters and any of ~^:?*[\.
NOT_A_BRANCH = re.compile(r"^[-/.]|/\.|\.lock(/|$)|\.\.|//|@\{|[/.]$|[\x00-\x20\x7f~^:?*\[\\]")
RETRIES = 4
PRECONDITION_FAILED = 412  # the Hub's answer to a commit whose parent_commit is no longer the branch's last commit
WAITING_FOR_THE_COMMIT = "waiting for the Hub's answer to the commit, to say whether it landed (Ctrl-C again: stop now)"
UNSURE = "unsure"  # a stop's `push_outcome` where the commit was sent and its answer not read


class PushError(RuntimeError):
    """A push that cannot go ahead or failed; the message says why (never the token)."""


class Pushed(NamedTuple):
    """Where a push went: the URL of the branch's commit that holds the export, and whether the push made it (False
    where the branch held every file already: huggingface_hub then leaves the commit out)."""

    commit_url: str
    new_commit: bool


def check_repo_id(repo_id: str) -> None:
    """Raise `PushError` unless `repo_id` is an `<owner>/<name>` that the Hub accepts (huggingface_hub's own check,
    which its client makes before it sends a request)."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not is_repo_id(repo_id):
        raise PushError(f"repo id {repo_id!r} is not of the form <owner>/<name> (letters, digits, '-', '_' and '.'; no "
                        "'--' or '..'; each part of at most 96 characters, neither starting nor ending with '-' or "
                        "'.'; not ending in '.git')" + hub_page_hint(repo_id or "", "model"))


def check_revision(revision: str | None) -> None:
    """Raise PushError for a branch name git (and so the Hub) would refuse; None is the default branch."""
    if revision is not None and (NOT_A_BRANCH.search(revision) or revision in ("", "@")):
        raise PushError(f"revision {revision!r} is not a branch name git accepts (no spaces, no ~^:?*[\\, no '..', "
                        "'//' or '@{', no part that starts with '.' or ends with '.lock', no leading '-' or '/', no "
                        "trailing '/' or '.')")


def check_push_access(repo_id: str, private: bool | None = None, api: HfApi | None = None) -> bool:
    """Fail early, before anything is sent, on what would make the push fail or go where it should not: no token, a
    token the Hub refuses or that is read-only, an owner the token's account cannot push under (neither the account nor
    one of its organizations), `private` asked of a repo that exists and is public (a push does not change an existing
    repo's visibility). Returns whether the repo exists."""
    api = api or HfApi()
    token = api.token or get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token is needed to push)")
    try:
        info = _retry(lambda: api.whoami(token=token), "checking the token")
        name = info["name"]
        access = (info.get("auth") or {}).get("accessToken") or {}
        if access.get("role") == "read":
            raise PushError(f"the Hugging Face token of {name} is read-only: a push needs a write token (HF_TOKEN or "
                            f"`hf auth login`)")
        owner = repo_id.split("/")[0]
        if access.get("role") == "fineGrained" and not _grants_repo_write(access.get("fineGrained"), repo_id):
            raise PushError(f"the fine-grained Hugging Face token of {name} has no repo.write permission on "
                            f"{owner} or {repo_id}: give it one (huggingface.co/settings/tokens) or use a write token")
        namespaces = [name, *(org["name"] for org in info.get("orgs") or [])]
        if owner.lower() not in {n.lower() for n in namespaces}:
            raise PushError(f"{repo_id}: the token is {name}'s, who can push to {', '.join(namespaces)} only (the "
                            f"owner before the / is the account or one of its organizations)")
        exists = _retry(lambda: api.repo_exists(repo_id), "looking up the repo")
        if exists and private and not _retry(lambda: api.model_info(repo_id).private, "looking up the repo"):
            raise PushError(f"{repo_id} exists and is public, and a push does not change an existing repo's "
                            f"visibility: make it private on the Hub first, or push without --private "
                            f"(hub_private_repo)")
        return exists
    except OfflineModeIsEnabled:
        raise PushError("HF_HUB_OFFLINE is set, so huggingface_hub sends nothing to the Hub: unset it to push (a run "
                        "that trains offline: leave push_to_hub out and push its export with `python -m hub push` "
                        "later)") from None
    except NETWORK_ERRORS as e:
        raise PushError(f"could not reach the Hugging Face Hub at {api.endpoint} to check the token and the repo "
                        f"({_describe(e)}); check the network (or HF_ENDPOINT)") from None
    except HfHubHTTPError as e:
        if (status := _status(e)) in (401, 403):
            raise PushError("the Hugging Face Hub refused the token (HTTP %s): set a valid write token in HF_TOKEN "
                            "or run `hf auth login`" % status) from None
        raise PushError(f"could not check the token and the repo: {_describe(e)}") from None


def _grants_repo_write(fine_grained, repo_id: str) -> bool:
    """Whether a fine-grained token's permissions (whoami's `auth.accessToken.fineGrained`) include `repo.write` on the
    repo's owner (user or organization) or on the repo itself. Permissions in another shape than the Hub's
    {"scoped": [{"entity": {"name": ...}, "permissions": [...]}]} are not judged (True): the Hub will."""
    try:
        return "repo.write" in fine_grained.get("global", []) or any(
            "repo.write" in scope["permissions"]
            and scope["entity"]["name"].lower() in (repo_id.split("/")[0].lower(), repo_id.lower())
            for scope in fine_grained["scoped"])
    except (KeyError, TypeError, AttributeError):
        return True


def _describe(error: BaseException) -> str:
    """An error's message in one line, with any token masked: an HTTP error's first line (status, URL, request id) and
    the Hub's reason, where it gave one (huggingface_hub puts it last, after a line on where to read of the status);
    any other error's whole message, after its type (the large-file upload's errors give the reason on later
    lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, HfHubHTTPError) and lines:
        reason = " ".join((error.server_message or "").split())
        text = lines[0] + (f": {reason}" if reason and reason.lower() not in lines[0].lower() else "")
    else:
        text = f"{type(error).__name__}: {' '.join(lines)}" if lines else type(error).__name__
    text = text if len(text) <= 500 else text[:497] + "..."
    return re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", text)


def _status(error: BaseException) -> int | None:
    """The HTTP status of the Hub's answer that `error` reports; None for any other error."""
    response = error.response if isinstance(error, HfHubHTTPError) else None
    return response.status_code if response is not None else None


def _transient(error: Exception) -> bool:
    if isinstance(error, HfHubHTTPError):
        status = _status(error)
        return status is None or status == 429 or status >= 500
    # HF_HUB_OFFLINE's refusal is a ConnectionError that no retry gets past.
    return isinstance(error, NETWORK_ERRORS) and not isinstance(error, OfflineModeIsEnabled)


def _moved_on(repo_id: str, revision: str | None, head: str, tries: int) -> str:
    """The error of a commit the Hub refused because the branch is no longer at `head`, the commit it was made on."""
    branch = f"branch {revision}" if revision else "default branch"
    cause = ("a commit from elsewhere, or this push's own earlier try, whose answer was lost on the way and which may "
             "have landed" if tries > 1 else "a commit from elsewhere; nothing of this push was committed")
    return (f"push to {repo_id} stopped: the {branch} moved on from commit {head[:8]} while this push was under way "
            f"({cause}). Push again: it compares the export with the branch as it is then, and commits what differs "
            f"or says the branch holds these files already")


def _branch_moved(api: HfApi, repo_id: str, revision: str | None, head: str) -> bool:
    """Whether the branch's last commit is another than `head` now (False where the Hub does not say)."""
    try:
        return api.repo_info(repo_id, revision=revision).sha != head
    except Exception:  # noqa: BLE001 - the push's own error is the one to report
        return False


def _wait_before_retry(error: Exception, attempt: int) -> int:
    """Seconds to wait before try `attempt` + 1: where the Hub's rate limit refused the call (429), until the limit's
    window resets, as its RateLimit header says (it counts requests over 5 minutes); else 1, 2, 4 ..."""
    if _status(error) == 429 and (limit := parse_ratelimit_headers(error.response.headers)) is not None:
        return limit.reset_in_seconds + 1
    return 2 ** (attempt - 1)


def _retry(call, what: str):
    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - re-raised unless transient
            if attempt == RETRIES or not _transient(e):
                raise
            wait = _wait_before_retry(e, attempt)
            logger.warning("%s failed (%s); retrying in %d s (%d/%d)", what, _describe(e), wait, attempt, RETRIES - 1)
            time.sleep(wait)


def _create_branch(api: HfApi, repo_id: str, branch: str) -> bool:
    """Create `branch` of `repo_id` from its default branch; returns False where the branch exists already."""
    try:
        api.create_branch(repo_id, branch=branch)
    except HfHubHTTPError as e:
        if _status(e) == 409:  # Conflict: the branch exists
            return False
        raise
    return True


def push(
    model_dir: str,
    repo_id: str,
    private: bool | None = None,
    revision: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
    card: str | None = None,
    api: HfApi | None = None,
) -> Pushed | list[str]:
    """Upload the export in `model_dir` to `repo_id` in one commit; returns where it went (the file list if dry_run).

    private: a repo it creates is private (True), public (False), or as the owner's settings make new repos (None:
    public, unless an organization makes them private); an existing repo keeps its visibility, and True refuses a
    public one.
    card: the model card to upload as README.md (default: the folder's README.md). Creates the repo (exist_ok) and,
    with `revision`, the branch. Checks the folder, its results and the repo id before sending anything; never
    changes the folder.
    """
    check_repo_id(repo_id)
    check_revision(revision)
    check_export(model_dir)
    load_results(model_dir)
    if card is None and not os.path.isfile(os.path.join(model_dir, "README.md")):
        raise PushError(f"{model_dir}: no README.md model card (render it with `python -m hub card {model_dir}`)")
    files = sorted(set(published_files(model_dir)) | {"README.md"})
    if dry_run:
        return files
    api = api or HfApi()
    existed = check_push_access(repo_id, private, api)
    new_branch, head, tries = False, None, 0
    sent, landed = False, None  # the commit request of the try under way is out; the commit the Hub made
    try:
        _retry(lambda: api.create_repo(repo_id, private=private, exist_ok=True), "creating the repo")
        if revision:
            new_branch = _retry(lambda: _create_branch(api, repo_id, revision), "creating the branch")
        head = _retry(lambda: api.repo_info(repo_id, revision=revision).sha, "reading the branch's last commit")
        # An earlier export's files that this one has not (a 2_Dense/ of another pooler, another tokenizer's
        # vocabulary) go in the same commit: adding files alone left them beside the new model. Others stay.
        stale = [f for f in _retry(lambda: api.list_repo_files(repo_id, revision=revision), "listing the repo")
                 if is_published(f) and f not in files]

        if card is None:
            with open(os.path.join(model_dir, "README.md"), encoding="utf-8") as f:
                card = f.read()
        # The Hub's check of the card's metadata, which create_commit makes before its uploads, and these now come
        # before it. A private method of the client's: where it is gone or changed, create_commit's own check is left.
        with contextlib.suppress(AttributeError, TypeError):
            _retry(lambda: api._validate_yaml(card), "checking the card's metadata")

        def content(name: str):
            return card.encode() if name == "README.md" else os.path.join(model_dir, name)

        def commit():  # fresh operations on every try: an operation object cannot be committed twice
            nonlocal tries, sent, landed
            tries, sent = tries + 1, False
            additions = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=content(f)) for f in files]
            # The large files first, on their own: a stop (Ctrl-C, SIGTERM) while they upload leaves no commit. The
            # commit is one short request that the Hub carries out whether or not its answer is read: a stop within
            # it waits for the answer, so that what is said of the repo after the stop is true.
            api.preupload_lfs_files(repo_id, additions=additions, revision=revision, free_memory=False)
            with StopsHeld(WAITING_FOR_THE_COMMIT):
                sent = True
                landed = api.create_commit(
                    repo_id,
                    operations=additions + [CommitOperationDelete(path_in_repo=f) for f in stale],
                    commit_message=commit_message or f"Upload SimCSE model ({len(files)} files)",
                    revision=revision,
                    # Refused where the branch moved on since it was listed (another push landed): that push's
                    # files that this export has not would stay beside these.
                    parent_commit=head,
                )
            return landed

        info = _retry(commit, "uploading")
        return Pushed(info.commit_url, info.oid != head)
    # Any failure, not only HTTP and network ones: the large files' upload raises its own errors (a refusal from the
    # LFS batch API is a ValueError, Xet's come from its Rust client), and Ctrl-C may come at any point.
    except BaseException as e:
        if isinstance(e, StopsHeld.stops) and landed is not None:  # it came after the commit was made
            e.push_outcome = Pushed(landed.commit_url, landed.oid != head)
            raise
        # A commit refused as the branch moved on: another push landed, or this one's earlier try did, its answer lost
        # on the way (the Hub may then refuse the deletions, done already, before it looks at the parent commit). The
        # repo holds that commit now, which stays.
        if isinstance(e, Exception) and tries and (_status(e) == PRECONDITION_FAILED or (
                tries > 1 and _branch_moved(api, repo_id, revision, head))):
            raise PushError(_moved_on(repo_id, revision, head, tries)) from None
        # Leave the Hub as it was: no empty repo behind a failed first push, no branch behind a failed push to it.
        if not existed:
            try:
                api.delete_repo(repo_id, missing_ok=True)
            except Exception:  # noqa: BLE001 - the push's own error is the one to report
                logger.warning("could not remove the empty repo %s after the failed push", repo_id)
        elif new_branch:
            try:
                api.delete_branch(repo_id, branch=revision)
            except Exception:  # noqa: BLE001 - as above
                logger.warning("could not remove the branch %s of %s after the failed push", revision, repo_id)
        if not isinstance(e, Exception):
            # The commit request went out and no answer of the Hub's came back (a second Ctrl-C did not wait for it,
            # or the connection failed): the commit may have been made, on a branch this push did not create.
            if sent and existed and not new_branch and not isinstance(e.__cause__, HfHubHTTPError):
                e.push_outcome = UNSURE
            raise
        raise PushError(f"push to {repo_id} failed: {_describe(e)}") from None


def stopped_push(model_dir: str, repo_id: str, revision: str | None, stop: BaseException,
                 pushed: Pushed | None = None) -> tuple[str, bool]:
    """A push that Ctrl-C or SIGTERM (`stop`) ended, where `push` returned `pushed` if it did -> what to say of the
    repo, and whether the export is to be pushed again: nothing was pushed; the commit was made (the stop came while
    the Hub made it, or after); or, the commit's answer not read, it may have been."""
    pushed = pushed or getattr(stop, "push_outcome", None)
    if isinstance(pushed, Pushed):
        return f"stopped after the push: {describe_push(model_dir, repo_id, revision, pushed)}", False
    if pushed == UNSURE:
        return f"stopped before the Hub answered the commit, which may have landed on {_where(repo_id, revision)}", True
    return f"stopped: nothing was pushed to {repo_id}", True


def _where(repo_id: str, revision: str | None) -> str:
    """A repo and the branch a push went to, as the push's lines name them."""
    return repo_id + (f" (branch {revision})" if revision else "")


def describe_push(model_dir: str, repo_id: str, revision: str | None, pushed: Pushed) -> str:
    """The line a push prints: what it sent where, or that the branch held the export already."""
    where = _where(repo_id, revision)
    if pushed.new_commit:
        return f"pushed {model_dir} to {where}: {pushed.commit_url}"
    return f"nothing to push: {where} holds {model_dir}'s files already, as of {pushed.commit_url}"
