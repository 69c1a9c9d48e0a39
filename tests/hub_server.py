"""A loopback Hugging Face Hub for tests: the HTTP endpoints `huggingface_hub` calls, served from memory on 127.0.0.1.

It lets the real `huggingface_hub` client (and transformers, timm, datasets on top of it) push and pull without a
network. Uploads use the "regular" path only (preupload answers `uploadMode: regular`, no LFS, no Xet), so a whole
commit arrives base64-encoded in one NDJSON POST and downloads are plain GETs with ETag / X-Repo-Commit headers.

Use it from a test module (add `from hub_server import hub_server, hub_env  # noqa: F401` to import the fixtures):

    def test_push(hub_env, hub_server):        # hub_env implies hub_server: the same server, env pointed at it
        subprocess.run([sys.executable, "publish.py", ...], env=hub_env, check=True)   # faithful: fresh process
        repo = hub_server.repo("tester/my-model")                      # or repo("tester/ds", repo_type="dataset")
        assert "model.safetensors" in repo.files()                    # {path: bytes} at the head of main
        assert repo.commits()[0].message.startswith("Upload")          # newest first

Fixtures
    hub_server  a running `HubServer` (fresh, empty store per test). `hub_server.endpoint` is the base URL.
    hub_env     points this process and its children at the server: sets HF_ENDPOINT, HF_TOKEN (=`server.token`),
                a private HF_HUB_CACHE and HF_DATASETS_CACHE, unsets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE, disables
                Xet, and patches `huggingface_hub.constants` (which read the environment once, at import) so
                in-process calls through a *new* `HfApi()` or `hf_hub_download` reach the server too. Yields the env
                dict to pass to `subprocess.run(..., env=hub_env)`; subprocesses are the most faithful (libraries
                that cached the endpoint at import see the right one). Everything is restored after the test.
    For a server shared by several tests, use the class directly: `with HubServer() as server: ...`
    and `hub_environment(server, monkeypatch_like)`.

HubServer API
    endpoint, user ("tester"), token ("hf_loopback_test_token"): a request with another bearer token gets 401
    (`Invalid credentials in Authorization header`), a write without one gets 401 too.
    repo(repo_id, repo_type="model") -> Repo | None; repos: {(repo_type, repo_id): Repo}
    Repo: repo_id, repo_type, private, branches {name: commit oid}, files(revision="main") -> {path: bytes},
          commits(branch="main") -> [Commit(oid, message, description, files)] newest first.
    inject(pattern, status=None, delay=0.0, times=None, body=None): requests whose "METHOD /path" matches the regex
          `pattern` sleep `delay` seconds (timeouts), then answer `status` (if given) with a JSON error; `times`
          limits how often (None: always). clear_injections() removes them.
    requests: [(method, path, status)] every request served, for assertions and debugging; unhandled requests are
          answered 404 and also listed in `unhandled`.

Endpoints (model, dataset and space repos; `{t}` is models|datasets|spaces)
    GET  /api/whoami-v2                          POST /api/repos/create (409 if it exists)
    POST /api/validate-yaml                      POST /api/{t}/{id}/preupload/{rev}  (always "regular")
    POST /api/{t}/{id}/commit/{rev}              POST /api/{t}/{id}/branch/{name}    (409 if it exists)
    GET  /api/{t}/{id}[/revision/{rev}]          GET  /api/{t}/{id}/tree/{rev}[/{path}] (?recursive=1)
    POST /api/{t}/{id}/paths-info/{rev}          GET  /api/{t}/{id}/refs, /api/{t}/{id}/commits/{rev}
    HEAD|GET /{id}/resolve/{rev}/{path}, /datasets/{id}/resolve/..., /spaces/{id}/resolve/...
Parquet or any other binary file is stored as bytes like everything else; there is no dataset viewer. Checked:
`datasets.load_dataset("tester/ds")` in a subprocess with `env=hub_env` loads data/{split}-*.parquet files pushed
with create_commit(repo_type="dataset"), and hf_hub_download / snapshot_download work for all repo types.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    """The oid git (and the Hub) gives a regular file; the client compares it to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    description: str
    files: dict[str, bytes]  # the full snapshot after this commit
    parent: str | None
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit oid
    by_oid: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        oid = self.branches.get(revision, revision)
        return self.by_oid.get(oid)

    def files(self, revision: str = "main") -> dict[str, bytes]:
        commit = self.resolve(revision)
        return dict(commit.files) if commit else {}

    def commits(self, branch: str = "main") -> list[Commit]:
        out, oid = [], self.branches.get(branch)
        while oid:
            out.append(self.by_oid[oid])
            oid = self.by_oid[oid].parent
        return out


@dataclass
class Injection:
    pattern: re.Pattern
    status: int | None
    delay: float
    times: int | None
    body: dict | None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """Start with `with HubServer() as server:` (or `.start()` / `.stop()`)."""

    def __init__(self, *, user: str = "tester", token: str = "hf_loopback_test_token"):
        self.user, self.token = user, token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[str] = []
        self.injections: list[Injection] = []
        self.lock = threading.RLock()
        self.httpd: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # --- lifecycle ---
    def start(self) -> "HubServer":
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True  # a hung (injected delay) request must not block shutdown
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- test helpers ---
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def inject(self, pattern: str, *, status: int | None = None, delay: float = 0.0, times: int | None = None,
               body: dict | None = None) -> None:
        self.injections.append(Injection(re.compile(pattern), status, delay, times, body))

    def clear_injections(self) -> None:
        self.injections.clear()

    # --- store operations (called by the handler under self.lock) ---
    def create_repo(self, repo_id: str, repo_type: str, private: bool) -> Repo:
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo")
        repo = Repo(repo_id, repo_type, private)
        first = Commit(uuid.uuid4().hex + "00000000", "initial commit", "", {}, None)
        repo.branches["main"], repo.by_oid[first.oid] = first.oid, first
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def commit(self, repo: Repo, branch: str, header: dict, ops: list[dict]) -> Commit:
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        parent = repo.by_oid[repo.branches[branch]]
        files = dict(parent.files)
        for op in ops:
            key, value = op["key"], op["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: we never asked for LFS, so the client should not send one
                raise HubError(400, f"unsupported commit operation {key} (this loopback Hub only takes regular files)")
        commit = Commit(uuid.uuid4().hex + "00000000", header.get("summary", ""), header.get("description", ""),
                        files, parent.oid)
        repo.by_oid[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit


def _split_repo_path(parts: list[str]) -> tuple[str, list[str]]:
    """['ns', 'name', 'resolve', ...] -> ('ns/name', ['resolve', ...]); ids without namespace are not supported."""
    return "/".join(parts[:2]), parts[2:]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries Content-Length

    def log_message(self, *args) -> None:  # quiet; see hub.requests
        pass

    # --- plumbing ---
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, payload=None, *, headers: dict | None = None, raw: bytes | None = None,
              head: bool = False) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(data)
        self.hub.requests.append((self.command, self.path, status))

    def _error(self, err: HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, {"error": err.message}, headers=headers, head=head)

    def _authorized(self) -> bool | None:
        """True: the server's token; None: no token; a wrong token raises 401 at once (like the Hub)."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        if auth != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _require_auth(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _injected(self) -> bool:
        line = f"{self.command} {urlsplit(self.path).path}"
        for inj in list(self.hub.injections):
            if inj.pattern.search(line) and (inj.times is None or inj.times > 0):
                if inj.times is not None:
                    inj.times -= 1
                if inj.delay:
                    time.sleep(inj.delay)
                if inj.status is not None:
                    self._body()
                    self._send(inj.status, inj.body or {"error": f"injected {inj.status}"},
                               head=self.command == "HEAD")
                    return True
        return False

    def _dispatch(self) -> None:
        try:
            if self._injected():
                return
            with self.hub.lock:
                self._route()
        except HubError as e:
            self._error(e, head=self.command == "HEAD")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch

    # --- routing ---
    def _route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        method = self.command
        if parts[:1] == ["api"]:
            rest = parts[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if rest == ["agent-harnesses"] and method == "GET":  # the client's user-agent registry: empty
                return self._send(200, {"standardEnvVars": [], "harnesses": {}})
            if len(rest) >= 3 and rest[0] in TYPE_FROM_PLURAL:
                repo_type = TYPE_FROM_PLURAL[rest[0]]
                repo_id, tail = _split_repo_path(rest[1:])
                return self._repo_api(repo_type, repo_id, tail, method, query)
        else:
            repo_type = "model"
            if parts and parts[0] in TYPE_FROM_PLURAL and len(parts) > 3 and parts[3] == "resolve":
                repo_type, parts = TYPE_FROM_PLURAL[parts[0]], parts[1:]
            repo_id, tail = _split_repo_path(parts)
            if len(tail) >= 3 and tail[0] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(repo_type, repo_id, tail[1], "/".join(map(unquote, tail[2:])))
        self.hub.unhandled.append(f"{method} {self.path}")
        raise HubError(404, f"loopback Hub: no route for {method} {url.path}")

    def _repo_api(self, repo_type: str, repo_id: str, tail: list[str], method: str, query: dict) -> None:
        action = tail[0] if tail else ""
        if action == "preupload" and method == "POST":
            return self._preupload(self._writable(repo_type, repo_id), tail[1] if len(tail) > 1 else "main")
        if action == "commit" and method == "POST":
            return self._commit(self._writable(repo_type, repo_id), unquote(tail[1]) if len(tail) > 1 else "main")
        if action == "branch" and method == "POST":
            return self._create_branch(self._writable(repo_type, repo_id), "/".join(map(unquote, tail[1:])))
        repo = self._readable(repo_type, repo_id)
        if method == "GET" and action in ("", "revision"):
            return self._info(repo, tail[1] if action == "revision" else "main")
        if method == "GET" and action == "tree":
            path = "/".join(map(unquote, tail[2:]))
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._tree(repo, tail[1], path, recursive)
        if method == "POST" and action == "paths-info":
            return self._paths_info(repo, tail[1])
        if method == "GET" and action == "refs":
            return self._send(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                                                 for b, oid in repo.branches.items()], "tags": [], "converts": []})
        if method == "GET" and action == "commits":
            return self._commits(repo, tail[1] if len(tail) > 1 else "main")
        self.hub.unhandled.append(f"{method} {self.path}")
        raise HubError(404, f"loopback Hub: no route for {method} {self.path}")

    def _lookup(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repo(repo_id, repo_type)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _readable(self, repo_type: str, repo_id: str) -> Repo:
        authorized = self._authorized()
        repo = self._lookup(repo_type, repo_id)
        if repo.private and not authorized:
            raise HubError(404, "Repository not found", "RepoNotFound")  # the Hub hides private repos
        return repo

    def _writable(self, repo_type: str, repo_id: str) -> Repo:
        self._require_auth()
        if repo_id.split("/")[0] != self.hub.user:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return self._lookup(repo_type, repo_id)

    def _commit_of(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    # --- endpoints ---
    def _whoami(self) -> None:
        self._require_auth()
        self._send(200, {"type": "user", "id": "0" * 24, "name": self.hub.user, "fullname": "Loopback Tester",
                         "email": None, "orgs": [], "isPro": False, "canPay": False,
                         "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}}})

    def _create_repo(self) -> None:
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        name, org = payload["name"], payload.get("organization") or self.hub.user
        if org != self.hub.user:
            raise HubError(403, f"You don't have the rights to create a repo under {org}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{org}/{name}"
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:  # the client reads "url" from the 409 too (exist_ok=True)
            return self._send(409, {"error": f"You already created this {repo_type} repo", "url": url})
        self.hub.create_repo(repo_id, repo_type, payload.get("visibility") == "private" or bool(payload.get("private")))
        self._send(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        import yaml

        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as e:
                raise HubError(400, f"invalid YAML: {e}")
            if meta is not None and not isinstance(meta, dict):
                raise HubError(400, "metadata must be a mapping")
        self._send(200, {"errors": [], "warnings": []})

    def _preupload(self, repo: Repo, revision: str) -> None:
        payload = json.loads(self._body() or b"{}")
        current = repo.resolve(revision)
        existing = current.files if current else {}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_sha1(existing[f["path"]]) if f["path"] in existing else None}
                 for f in payload.get("files", [])]
        self._send(200, {"files": files, "commitOid": current.oid if current else None})

    def _commit(self, repo: Repo, branch: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), {})
        commit = self.hub.commit(repo, branch, header, [item for item in lines if item["key"] != "header"])
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._send(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    def _create_branch(self, repo: Repo, branch: str) -> None:
        payload = json.loads(self._body() or b"{}")
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._commit_of(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        self._send(200, {})

    def _info(self, repo: Repo, revision: str) -> None:
        commit = self._commit_of(repo, revision)
        self._send(200, {
            "id": repo.repo_id, "_id": "0" * 24, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
            "private": repo.private, "gated": False, "disabled": False, "lastModified": commit.date,
            "createdAt": repo.by_oid[repo.commits("main")[-1].oid].date if repo.commits("main") else commit.date,
            "tags": [], "downloads": 0, "likes": 0,
            "siblings": [{"rfilename": p, "size": len(b), "blobId": git_blob_sha1(b)}
                         for p, b in sorted(commit.files.items())],
        })

    def _entries(self, files: dict[str, bytes], *, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        out, dirs = [], set()
        for path, data in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rel = path[len(prefix) + 1:] if prefix else path
            head, _, _ = rel.partition("/")
            if "/" in rel:
                base = f"{prefix}/{head}" if prefix else head
                subdirs = [base] if not recursive else ["/".join(path.split("/")[:i]) for i in
                                                        range(base.count("/") + 1, path.count("/") + 1)]
                dirs.update(subdirs)
                if not recursive:
                    continue
            out.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
        return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)] + out

    def _tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> None:
        commit = self._commit_of(repo, revision)
        if path and not any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        self._send(200, self._entries(commit.files, prefix=path, recursive=recursive))

    def _paths_info(self, repo: Repo, revision: str) -> None:
        commit = self._commit_of(repo, revision)
        body = self._body().decode()
        ctype = self.headers.get("Content-Type", "")
        paths = json.loads(body).get("paths", []) if "json" in ctype else parse_qs(body).get("paths", [])
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                data = commit.files[path]
                out.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
        self._send(200, out)

    def _commits(self, repo: Repo, branch: str) -> None:
        self._commit_of(repo, branch)
        self._send(200, [{"id": c.oid, "title": c.message, "message": c.description, "date": c.date,
                          "authors": [{"user": self.hub.user}]} for c in repo.commits(unquote(branch))])

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        head = self.command == "HEAD"
        try:
            repo = self._readable(repo_type, repo_id)
            commit = self._commit_of(repo, revision)
            if path not in commit.files:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        except HubError as e:
            return self._error(e, head=head)
        data = commit.files[path]
        headers = {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        self._send(200, raw=data, headers=headers, head=head)


# --- pytest fixtures ---

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_environment(server: HubServer, patch, cache_dir: str) -> dict[str, str]:
    """Point env and huggingface_hub.constants at `server` through `patch` (a pytest MonkeyPatch); returns the env.
    Constants are patched because huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import."""
    from huggingface_hub import constants

    for var in OFFLINE_VARS:
        patch.delenv(var, raising=False)
    patch.setenv("HF_ENDPOINT", server.endpoint)
    patch.setenv("HF_TOKEN", server.token)
    patch.setenv("HF_HUB_CACHE", os.path.join(cache_dir, "hub"))
    patch.setenv("HF_DATASETS_CACHE", os.path.join(cache_dir, "datasets"))
    patch.setenv("HF_HUB_DISABLE_XET", "1")  # plain HTTP downloads; the loopback Hub has no Xet storage
    patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    patch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    patch.setattr(constants, "ENDPOINT", server.endpoint)
    patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                  server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(constants, "HF_HUB_CACHE", os.path.join(cache_dir, "hub"))
    patch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    return dict(os.environ)


@pytest.fixture
def hub_server():
    with HubServer() as server:
        yield server


@pytest.fixture
def hub_env(hub_server, monkeypatch, tmp_path_factory):
    yield hub_environment(hub_server, monkeypatch, str(tmp_path_factory.mktemp("hub_cache")))
