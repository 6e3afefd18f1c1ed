"""A small local stand-in for the Hugging Face Hub, for tests: the real `huggingface_hub` client talks to it over
HTTP through `HF_ENDPOINT=http://127.0.0.1:<port>`. It keeps what it receives in memory.

It serves what a push and a download use: whoami, repo creation and deletion, branch creation and deletion, preupload
(with the id of each file the branch holds, so the client leaves unchanged files out of a commit, and makes no commit
when nothing changed), YAML validation (of the licence and the datasets, on its own route and on commit, as the Hub
refuses what it does not know), commits (NDJSON: files added and deleted), model info, tree listing and file resolution;
and, for `datasets.load_dataset`, dataset repos (seeded with `add_repo`): info, tree, paths-info and file resolution. As
on the Hub, binary files (weights, images) are large files: preupload says "lfs", the client uploads them through the
git-LFS batch API (basic transfer: a PUT, then a verify) and the commit names them by SHA-256; text files travel inside
the commit ("regular"). The stand-in has no Xet storage, which huggingface_hub uses for large files whenever `hf_xet` is
installed: clients of the stand-in run with `HF_HUB_DISABLE_XET=1` and take the LFS protocol, as they do without
`hf_xet`.

Tokens are checked against `tokens` ({token: user}); `orgs` ({user: [organization]}) widens where a user may read and
write; `read_only_tokens` may read but not write (a 403, as the Hub answers a read token); `fine_grained_tokens`
({token: [(entity, [permission])]}) write only where an entity (an owner or a repo id) has "repo.write"; private repos
are invisible to others. `fail_next_commits` answers that many commit requests with `commit_failure` (status, code,
message; a 503 by default; a 429 with the Hub's RateLimit headers, reset in `rate_limit_reset` s) to exercise retries;
`reject_commits` answers 422 to every commit; `drop_commits` closes the connection of every commit request without an
answer (a network failure), and `lose_next_commit_answers` that many after committing (an answer lost on the way); a
commit whose `parentCommit` is not the branch's last is refused with a 412, as the Hub refuses it (before it looks at
the files deleted, or after, with `parent_checked_first` False); `fail_next_lfs_uploads` answers 500 to that many
large-file PUTs; `refuse_lfs_uploads` answers the LFS batch request with a per-object error (which the client raises as
a ValueError, not an HTTP error); `whoami_failure` (status, code, message) answers every token check (a server that is
not the Hub at HF_ENDPOINT); `refuse_deletions` answers 500 to every deletion (of a repo or a branch); `lfs_gate`, an
Event, holds every large-file PUT until it is set (an upload in progress); `commit_answer_gate`, an Event, holds the
answer to every commit, made already, until it is set (a commit whose answer is on its way).

An exception in a request's handling is kept in `errors` (the fixture fails the test that caused it), not printed by
the server thread where no test looks; a client that hung up before its answer (a push stopped while it waits) is
none.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict] = field(default_factory=list)  # {"branch", "message", "files": [paths], "oid", "snapshot"}

    def files_at(self, revision: str) -> dict[str, bytes] | None:
        """A branch's files, or the files as of a commit id (clients pin downloads to the commit they resolved)."""
        if revision in self.branches:
            return self.branches[revision]
        return next((c["snapshot"] for c in self.commits if c["oid"] == revision), None)

    def sha(self, branch: str) -> str:
        mine = [c["oid"] for c in self.commits if c["branch"] == branch]
        return mine[-1] if mine else "0" * 40


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".npy", ".npz", ".parquet", ".arrow",
                ".pkl", ".zip", ".gz", ".tar")  # from the default .gitattributes of a Hub repo


def stored_as_lfs(path: str, head: bytes, size: int) -> bool:
    """Whether the Hub keeps a file as a large file: a pattern of its default .gitattributes, binary content (a NUL
    byte or not UTF-8 in its first bytes), or over 10 MB."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head[:512])  # not final: a character cut at 512 bytes is fine
        binary = b"\0" in head[:512]
    except UnicodeDecodeError:
        binary = True
    return path.endswith(LFS_SUFFIXES) or binary or size > 10 * 2**20


def file_oid(content: bytes, upload_mode: str) -> str:
    """The id preupload gives a file the branch holds, which the client compares with its own file's to leave an
    unchanged file out of the commit: the SHA-256 of a large file's content, the git blob SHA-1 of a regular file."""
    if upload_mode == "lfs":
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


# The licences the Hub's metadata validation accepts (its message, quoted in huggingface/huggingface_hub#4218, 2026-05).
HUB_LICENSES = (
    "apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m "
    "afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 "
    "cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 "
    "cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 "
    "cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl "
    "gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr "
    "mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr "
    "deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 "
    "grok2-community gemma unknown other").split()


def metadata_problem(card: str) -> str | None:
    """What the Hub's validation of a model card's YAML metadata would refuse (here: the licence, and a dataset that is
    no repo id), in its words (the client adds "Invalid metadata in README.md." before them)."""
    if not card.startswith("---"):
        return None
    metadata = yaml.safe_load(card.split("---", 2)[1]) or {}
    licenses = metadata.get("license")
    licenses = licenses if isinstance(licenses, list) else [licenses]
    if any(lic not in HUB_LICENSES for lic in licenses if lic is not None):
        return f'"license" must be one of [{", ".join(HUB_LICENSES)}, array]'
    for i, dataset in enumerate(metadata.get("datasets") or []):  # as the Hub refused a path (autotrain-advanced #648)
        try:
            validate_repo_id(dataset)
        except HFValidationError:
            return (f'"datasets[{i}]" with value "{dataset}" is not valid. If possible, use a dataset id from '
                    "https://hf.co/datasets.")
    return None


def tree_entries(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict]:
    """The Hub's tree listing of `folder` in `files` {path: content}: its files and folders (with `recursive`, all of
    them below it; else its direct children)."""
    base = folder.strip("/") + "/" if folder.strip("/") else ""
    entries = {}
    for path, content in files.items():
        if not path.startswith(base):
            continue
        segments = path[len(base):].split("/")
        for depth in range(1, len(segments) if recursive else min(2, len(segments))):
            directory = base + "/".join(segments[:depth])
            entries[directory] = {"type": "directory", "path": directory,
                                  "oid": hashlib.sha1(directory.encode()).hexdigest()}
        if recursive or len(segments) == 1:
            entries[path] = {"type": "file", "path": path, "size": len(content),
                             "oid": hashlib.sha1(content).hexdigest()}
            if stored_as_lfs(path, content, len(content)):
                entries[path]["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content),
                                        "pointerSize": 134}
    return [entries[p] for p in sorted(entries)]


class HubStandIn:
    """Start with `HubStandIn(tokens={"hf_x": "user"}).start()`; `.url` is the endpoint; `.stop()` when done."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens
        self.orgs: dict[str, list[str]] = {}
        self.private_by_default: set[str] = set()  # owners whose settings make new repos private
        self.read_only_tokens: set[str] = set()
        self.fine_grained_tokens: dict[str, list[tuple[str, list[str]]]] = {}
        self.repos: dict[str, Repo] = {}
        self.fail_next_commits = 0
        self.commit_failure = (503, "ServiceUnavailable", "try again")  # the answer of those
        self.rate_limit_reset = 3  # seconds, in the RateLimit header of a 429
        self.reject_commits = False
        self.drop_commits = False
        self.lose_next_commit_answers = 0
        self.parent_checked_first = True
        self.fail_next_lfs_uploads = 0
        self.whoami_failure: tuple[int, str, str] | None = None  # (status, code, message) to answer the token check
        self.refuse_lfs_uploads = False
        self.refuse_deletions = False
        self.lfs_gate: threading.Event | None = None
        self.commit_answer_gate: threading.Event | None = None
        self.lfs_objects: dict[str, bytes] = {}  # large files received, by SHA-256, before a commit names them
        self.requests: list[str] = []
        self.errors: list[str] = []  # tracebacks of requests the stand-in failed to handle
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.handle_error = self._keep_error
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model") -> None:
        """Seed a public repo (`repo_type` "model" or "dataset") with `files` {path: content} in one commit."""
        repo = Repo(private=False)
        repo.branches["main"] = dict(files)
        oid = hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()
        repo.commits.append({"branch": "main", "message": "seed", "files": sorted(files), "oid": oid,
                             "snapshot": dict(files)})
        self.repos[repo_id if repo_type == "model" else f"datasets/{repo_id}"] = repo

    def start(self) -> "HubStandIn":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _keep_error(self, request, client_address) -> None:
        """socketserver's hook, called in the handling thread while the exception is handled."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            self.errors.append(traceback.format_exc())

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            # ------------------------------------------------------------ helpers
            def _token(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return auth[7:] if auth.startswith("Bearer ") else None

            def _user(self):
                return hub.tokens.get(self._token())

            def _member_of(self, owner: str) -> bool:
                """Whether this request's user is `owner` or belongs to the organization `owner`."""
                user = self._user()
                return user is not None and owner in (user, *hub.orgs.get(user, []))

            def _may_write(self, repo_id: str) -> bool:
                token, owner = self._token(), repo_id.split("/")[0]
                if token in hub.fine_grained_tokens:
                    return self._member_of(owner) and any(
                        entity in (owner, repo_id) and "repo.write" in permissions
                        for entity, permissions in hub.fine_grained_tokens[token])
                return self._member_of(owner) and token not in hub.read_only_tokens

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = b""  # a streamed upload: hex size line, chunk, CRLF, ..., a chunk of size 0
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return data

            def _send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None):
                data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if raw is None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, headers: dict | None = None):
                self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message,
                                                        **(headers or {})})

            def _repo(self, repo_id: str):
                repo = hub.repos.get(repo_id)
                if repo is None or (repo.private and not self._member_of(repo_id.split("/")[0])):
                    self._error(404, "RepoNotFound", "Repository not found")
                    return None
                return repo

            # ------------------------------------------------------------ routes
            def do_DELETE(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"DELETE {path}")
                body = self._body()
                user = self._user()
                parts = path.strip("/").split("/")
                is_branch = parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "branch"
                if path != "/api/repos/delete" and not is_branch:
                    return self._error(404, "NotFound", f"no route {path}")
                if user is None:
                    return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                if hub.refuse_deletions:
                    return self._error(500, "InternalServerError", "deletion failed in the stand-in")
                if is_branch:
                    repo_id, branch = "/".join(parts[2:4]), "/".join(parts[5:])
                    if (repo := self._repo(repo_id)) is None:
                        return None
                    if not self._may_write(repo_id):
                        return self._error(403, "Forbidden", "You don't have write access to this repo")
                    if branch == "main":
                        return self._error(403, "Forbidden", "The default branch cannot be deleted")
                    with hub._lock:
                        if repo.branches.pop(branch, None) is None:
                            return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                    return self._send(200, {})
                req = json.loads(body)
                repo_id = f"{req.get('organization') or user}/{req['name']}"
                if not self._may_write(repo_id):
                    return self._error(403, "Forbidden", "You don't have the rights to delete this repo")
                with hub._lock:
                    if hub.repos.pop(repo_id, None) is None:
                        return self._error(404, "RepoNotFound", "Repository not found")
                return self._send(200, {})

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                if path == "/api/whoami-v2":
                    if hub.whoami_failure:
                        return self._error(*hub.whoami_failure)
                    user = self._user()
                    if user is None:
                        return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                    token = self._token()
                    access = {"role": "read" if token in hub.read_only_tokens else "write"}
                    if token in hub.fine_grained_tokens:  # the Hub's shape for a fine-grained token
                        access = {"role": "fineGrained", "fineGrained": {
                            "canReadGatedRepos": True, "global": ["discussion.write", "post.write"],
                            "scoped": [{"entity": {"type": "model" if "/" in entity else "user", "name": entity},
                                        "permissions": ["repo.content.read", *permissions]}
                                       for entity, permissions in hub.fine_grained_tokens[token]]}}
                    return self._send(200, {"type": "user", "name": user,
                                            "orgs": [{"type": "org", "name": org} for org in hub.orgs.get(user, [])],
                                            "auth": {"type": "access_token", "accessToken": access}})
                parts = path.strip("/").split("/")
                if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
                    repo_id = "/".join(parts[2:4])
                    repo = self._repo(repo_id if parts[1] == "models" else f"datasets/{repo_id}")
                    if repo is None:
                        return None
                    rest = parts[4:]
                    branch = rest[1] if len(rest) >= 2 and rest[0] in ("revision", "tree") else "main"
                    files = repo.files_at(branch)
                    if files is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                    if rest[:1] == ["tree"]:
                        recursive = "recursive=true" in urlparse(self.path).query.lower()
                        return self._send(200, tree_entries(files, "/".join(rest[2:]), recursive))
                    sha = repo.sha(branch) if branch in repo.branches else branch
                    return self._send(200, {"id": repo_id, "modelId": repo_id, "sha": sha,
                                            "private": repo.private, "tags": [], "downloads": 0, "likes": 0,
                                            "siblings": [{"rfilename": p} for p in sorted(files)]})
                if parts[:1] == ["datasets"]:
                    parts = parts[1:]
                    parts[0] = f"datasets/{parts[0]}"
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo("/".join(parts[:2]))
                    if repo is None:
                        return None
                    branch, filename = parts[3], "/".join(parts[4:])
                    files = repo.files_at(branch)
                    if files is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                    content = files.get(filename)
                    if content is None:
                        return self._error(404, "EntryNotFound", f"{filename} does not exist")
                    etag = hashlib.sha1(content).hexdigest()
                    commit = repo.sha(branch) if branch in repo.branches else branch
                    headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
                    if stored_as_lfs(filename, content, len(content)):  # the Hub names a large file by its SHA-256
                        headers.update({"X-Linked-Etag": f'"{hashlib.sha256(content).hexdigest()}"',
                                        "X-Linked-Size": str(len(content))})
                    return self._send(200, raw=content, headers=headers)
                return self._error(404, "NotFound", f"no route {path}")

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"POST {path}")
                body = self._body()
                user = self._user()
                if path == "/api/validate-yaml":
                    problem = metadata_problem(json.loads(body).get("content", ""))
                    return self._send(400 if problem else 200, {"errors": [{"message": problem}] if problem else [],
                                                                "warnings": []})
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "paths-info":
                    repo = self._repo(f"datasets/{parts[2]}/{parts[3]}")
                    if repo is None:
                        return None
                    files = repo.files_at("/".join(parts[5:]))
                    if files is None:
                        return self._error(404, "RevisionNotFound", "Invalid rev id")
                    wanted = parse_qs(body.decode()).get("paths", [])
                    listed = {e["path"]: e for e in tree_entries(files, "", recursive=True)}
                    return self._send(200, [listed[p.strip("/")] for p in wanted if p.strip("/") in listed])
                if user is None:
                    return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                if path.endswith(".git/info/lfs/objects/batch") or path.endswith(".git/info/lfs/objects/verify"):
                    return self._lfs(path, json.loads(body))
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = f"{req.get('organization') or user}/{req['name']}"
                    if not self._may_write(repo_id):
                        return self._error(403, "Forbidden", "You don't have the rights to create a repo here")
                    with hub._lock:
                        if repo_id in hub.repos:
                            return self._send(409, {"error": "You already created this model repo",
                                                    "url": f"{hub.url}/{repo_id}"})
                        if "visibility" in req or "private" in req:
                            private = req.get("visibility") == "private" or bool(req.get("private"))
                        else:
                            private = repo_id.split("/")[0] in hub.private_by_default
                        hub.repos[repo_id] = Repo(private=private)
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                parts = path.strip("/").split("/")
                if parts[:2] != ["api", "models"] or len(parts) < 6:
                    return self._error(404, "NotFound", f"no route {path}")
                repo_id, action, branch = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
                repo = self._repo(repo_id)
                if repo is None:
                    return None
                if not self._may_write(repo_id):
                    return self._error(403, "Forbidden", "You don't have write access to this repo")
                if action == "branch":
                    with hub._lock:
                        if branch in repo.branches:
                            return self._error(409, "Conflict", "Branch already exists")
                        repo.branches[branch] = dict(repo.branches["main"])
                    return self._send(200, {})
                if branch not in repo.branches:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                if action == "preupload":
                    files = json.loads(body)["files"]
                    modes = {f["path"]: "lfs" if stored_as_lfs(f["path"], base64.b64decode(f.get("sample", "")),
                                                                f.get("size", 0)) else "regular" for f in files}
                    held = repo.branches[branch]
                    return self._send(200, {"files": [
                        {"path": p, "uploadMode": m, "shouldIgnore": False,
                         **({"oid": file_oid(held[p], m)} if p in held else {})} for p, m in modes.items()]})
                if action == "commit":
                    if hub.drop_commits:
                        self.close_connection = True
                        return None
                    if hub.reject_commits:
                        return self._error(422, "BadRequest", "commit rejected by the stand-in")
                    with hub._lock:
                        if hub.fail_next_commits > 0:
                            hub.fail_next_commits -= 1
                            status, code, message = hub.commit_failure
                            # The Hub's rate limit: no request left until the window resets.
                            limit = {"RateLimit": f'"api";r=0;t={hub.rate_limit_reset}',
                                     "RateLimit-Policy": '"fixed window";"api";q=500;w=300'} if status == 429 else None
                            return self._error(status, code, message, limit)
                        header, added, deleted = {}, {}, []
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "header":
                                header = item["value"]
                                if hub.parent_checked_first and self._moved_on(repo, branch, header):
                                    return self._moved_on_error()
                            elif item["key"] == "file":
                                added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                            elif item["key"] == "lfsFile":
                                content = hub.lfs_objects.get(item["value"]["oid"])
                                if content is None or len(content) != item["value"]["size"]:
                                    return self._error(422, "BadRequest",
                                                       f"LFS object of {item['value']['path']} not uploaded")
                                added[item["value"]["path"]] = content
                            elif item["key"] == "deletedFile":
                                if item["value"]["path"] not in repo.branches[branch]:
                                    return self._error(404, "EntryNotFound", f"{item['value']['path']} not found")
                                deleted.append(item["value"]["path"])
                            else:
                                return self._error(400, "BadRequest", f"unsupported commit item {item['key']}")
                        if self._moved_on(repo, branch, header):
                            return self._moved_on_error()
                        problem = metadata_problem(added.get("README.md", b"").decode())
                        if problem:
                            return self._error(400, "BadRequest", f"Invalid metadata in README.md. {problem}")
                        repo.branches[branch].update(added)
                        for path in deleted:
                            del repo.branches[branch][path]
                        oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}{sorted(added)}".encode()).hexdigest()
                        repo.commits.append({"branch": branch, "message": header.get("summary"), "files": sorted(added),
                                             "deleted": sorted(deleted), "oid": oid,
                                             "snapshot": dict(repo.branches[branch])})
                        if hub.lose_next_commit_answers > 0:  # the commit landed; its answer never arrives
                            hub.lose_next_commit_answers -= 1
                            self.close_connection = True
                            return None
                    if hub.commit_answer_gate is not None:
                        hub.commit_answer_gate.wait(timeout=120)
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                            "pullRequestUrl": None})
                return self._error(404, "NotFound", f"no route {path}")

            @staticmethod
            def _moved_on(repo: Repo, branch: str, header: dict) -> bool:
                """Whether a commit names a parent commit that is not the branch's last."""
                return header.get("parentCommit") not in (None, repo.sha(branch))

            def _moved_on_error(self):
                return self._error(412, "PreconditionFailed",
                                   "A commit has happened since. Please refresh and try again.")

            def _lfs(self, path: str, request: dict):
                """The git-LFS batch API of a model repo (upload: where to PUT each object not stored yet) and the
                verify call after a PUT."""
                repo_id = path.strip("/").split(".git/")[0]
                repo = self._repo(repo_id)
                if repo is None:
                    return None
                if not self._may_write(repo_id):
                    return self._error(403, "Forbidden", "You don't have write access to this repo")
                if path.endswith("/verify"):
                    stored = hub.lfs_objects.get(request["oid"])
                    if stored is None or len(stored) != request["size"]:
                        return self._error(404, "NotFound", f"object {request['oid']} not stored")
                    return self._send(200, {})
                objects = []
                for obj in request["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if hub.refuse_lfs_uploads:
                        entry["error"] = {"code": 422, "message": "large files are refused by the stand-in"}
                    elif obj["oid"] not in hub.lfs_objects:
                        entry["actions"] = {
                            "upload": {"href": f"{hub.url}/lfs-storage/{obj['oid']}"},
                            "verify": {"href": f"{hub.url}/{repo_id}.git/info/lfs/objects/verify"}}
                    objects.append(entry)
                return self._send(200, {"transfer": "basic", "objects": objects})

            def do_PUT(self):
                """Object storage for the LFS uploads (on the Hub, a signed URL of its storage: no token)."""
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"PUT {path}")
                body = self._body()
                parts = path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "lfs-storage":
                    return self._error(404, "NotFound", f"no route {path}")
                if hub.lfs_gate is not None:
                    hub.lfs_gate.wait(timeout=120)
                with hub._lock:
                    if hub.fail_next_lfs_uploads > 0:
                        hub.fail_next_lfs_uploads -= 1
                        return self._error(500, "InternalError", "storage unavailable")
                if hashlib.sha256(body).hexdigest() != parts[1]:
                    return self._error(400, "BadDigest", "the content does not match its SHA-256")
                hub.lfs_objects[parts[1]] = body
                return self._send(200, raw=b"", headers={"ETag": f'"{parts[1]}"'})

        return Handler
