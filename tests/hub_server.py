"""A local Hugging Face Hub for the tests: the HTTP routes `huggingface_hub` and `datasets` use to write and read.

Write side: repository creation (``POST /api/repos/create``), README metadata validation, ``preupload``
(regular or LFS per file), the git-LFS batch API with the *basic* transfer (``PUT`` of the object, then a
``verify`` call) and the NDJSON ``commit``. Read side: repository info, ``tree`` (recursive), ``paths-info``
and ``resolve`` (HEAD and GET, byte ranges), with the Hub's headers (``X-Repo-Commit``, ``ETag``,
``X-Error-Code`` on a 404) so that `hf_hub_download`, `snapshot_download`, `load_dataset` (also streaming)
and `from_pretrained` work against it unchanged. Everything lives in memory; each commit is a full snapshot.

Only the protocol is imitated, never the client: tests point ``HF_ENDPOINT`` at `HubServer.url` in a
subprocess (huggingface_hub and datasets read it when imported) with ``HF_HUB_DISABLE_XET=1``, so uploads
take the git-LFS path that this server speaks rather than the Xet storage protocol.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".safetensors", ".png", ".dcm", ".bin", ".npz")
LFS_MIN_SIZE = 10 * 1000 * 1000  # the Hub stores larger files in LFS whatever they are


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def blob_id(self) -> str:
        return git_blob_sha(lfs_pointer(self.sha256, len(self.content)) if self.lfs else self.content)

    def entry(self, path: str) -> dict:
        """The `tree` / `paths-info` entry."""
        entry = {"type": "file", "path": path, "size": len(self.content), "oid": self.blob_id}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.content), "pointerSize": len(lfs_pointer(self.sha256, len(self.content)))}
        return entry


@dataclass
class Commit:
    sha: str
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    def revision(self, revision: str) -> Commit | None:
        """The commit of a branch name (only ``main``) or a commit sha; an empty repo has an empty main."""
        if revision == "main":
            return self.commits[-1] if self.commits else Commit("0" * 40, "", {})
        return next((c for c in self.commits if c.sha == revision), None)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer(http.server.ThreadingHTTPServer):
    """The local Hub. `requests` records (method, path, Range header) of every request; `faults` holds
    (method, path regex, status) answers to give once, in place of the real one (to test retries)."""

    daemon_threads = True

    def __init__(self, token: str | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.faults: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repository at a revision (for the tests' checks)."""
        return {path: f.content for path, f in self.repos[(repo_type, repo_id)].revision(revision).files.items()}

    def commits(self, repo_type: str, repo_id: str) -> list[Commit]:
        return list(self.repos[(repo_type, repo_id)].commits)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # httpx streams file uploads so
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        body = self._body() if self.command in ("POST", "PUT") else b""
        with self.server.lock:
            self.server.requests.append((self.command, parts.path, self.headers.get("Range")))
            fault = next((f for f in self.server.faults if f[0] == self.command and re.search(f[1], path)), None)
            if fault:
                self.server.faults.remove(fault)
        if fault:
            return self._json({"error": "injected fault"}, fault[2], {"X-Error-Message": "injected fault", "Retry-After": "0"})
        try:
            for method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if method == self.command or (method == "GET" and self.command == "HEAD"):
                    if match:
                        with self.server.lock:
                            return handler(self, match, query, body)
            raise HubError(404, f"no route for {self.command} {path}")
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json({"error": error.message}, error.status, headers)

    def _authorise(self) -> None:
        expected = self.server.token
        if expected is not None and self.headers.get("Authorization") != f"Bearer {expected}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, kind: str, repo_id: str) -> Repo:
        repo = self.server.repos.get((REPO_TYPES.get(kind, kind), repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.revision(unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ------------------------------------------------------------------ write side

    def create_repo(self, match, query, body) -> None:
        self._authorise()
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.server.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.server.repos:
            return self._json({"error": "You already created this repo", "url": url}, 409)
        self.server.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, payload.get("visibility") == "private" or bool(payload.get("private")))
        self._json({"url": url, "name": repo_id})

    def validate_yaml(self, match, query, body) -> None:
        self._json({"errors": [], "warnings": []})

    def preupload(self, match, query, body) -> None:
        self._authorise()
        repo = self._repo(match["kind"], match["repo"])
        current = self._commit(repo, match["rev"]).files
        answers = []
        for entry in json.loads(body)["files"]:
            sample = base64.b64decode(entry["sample"])
            lfs = entry["size"] >= LFS_MIN_SIZE or entry["path"].endswith(LFS_SUFFIXES) or b"\0" in sample
            existing = current.get(entry["path"])
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.blob_id)
            answers.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": answers, "commitOid": repo.revision("main").sha})

    def lfs_batch(self, match, query, body) -> None:
        self._authorise()
        self._repo((match["prefix"] or "models/").rstrip("/"), match["repo"])
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "only the basic upload transfer is served here")
        objects = []
        for item in payload["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.server.lfs_objects:
                answer["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs-objects/{item['oid']}", "header": {}},
                    "verify": {"href": f"{self.server.url}/lfs-verify", "header": {}},
                }
            objects.append(answer)
        self._json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, match, query, body) -> None:
        if hashlib.sha256(body).hexdigest() != match["oid"]:
            raise HubError(400, f"uploaded bytes do not hash to {match['oid']}")
        self.server.lfs_objects[match["oid"]] = body
        self._send(200)

    def lfs_verify(self, match, query, body) -> None:
        payload = json.loads(body)
        stored = self.server.lfs_objects.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            raise HubError(404, f"LFS object {payload['oid']} was not uploaded")
        self._json({"success": True})

    def commit(self, match, query, body) -> None:
        self._authorise()
        repo = self._repo(match["kind"], match["repo"])
        if match["rev"] != "main":
            raise HubError(400, "commits go to main only here")
        files = dict(self._commit(repo, "main").files)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]
        if header["key"] != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                content = self.server.lfs_objects.get(value["oid"])
                if content is None:
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = StoredFile(content, lfs=True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        parent = repo.revision("main").sha
        digest = hashlib.sha1(parent.encode() + header["value"]["summary"].encode())
        for path in sorted(files):
            digest.update(path.encode() + files[path].sha256.encode())
        commit = Commit(digest.hexdigest(), header["value"]["summary"], files)
        repo.commits.append(commit)
        url = f"{self.server.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        self._json({"commitUrl": url, "commitOid": commit.sha, "success": True})

    # ------------------------------------------------------------------ read side

    def repo_info(self, match, query, body) -> None:
        repo = self._repo(match["kind"], match["repo"])
        commit = self._commit(repo, match["rev"] or "main")
        self._json({
            "id": repo.repo_id, "_id": repo.repo_id, "sha": commit.sha, "private": repo.private, "disabled": False,
            "gated": False, "downloads": 0, "likes": 0, "tags": [], "author": repo.repo_id.split("/")[0],
            "siblings": [{"rfilename": path, "size": len(f.content)} for path, f in sorted(commit.files.items())],
        })

    def tree(self, match, query, body) -> None:
        repo = self._repo(match["kind"], match["repo"])
        files = self._commit(repo, match["rev"]).files
        base = (match["path"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, stored in sorted(files.items()):
            if base and not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :] if base else path
            if "/" not in rest or recursive:
                entries.append(stored.entry(path))
            parts = rest.split("/")[:-1]
            for depth in range(1, len(parts) + 1 if recursive else min(1, len(parts)) + 1):
                folders.add("/".join(([base] if base else []) + parts[:depth]))
        if base and not entries and not folders:
            raise HubError(404, f"{base} does not exist", "EntryNotFound")
        folder_entries = [{"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest()} for p in sorted(folders)]
        self._json(folder_entries + entries)

    def paths_info(self, match, query, body) -> None:
        repo = self._repo(match["kind"], match["repo"])
        files = self._commit(repo, match["rev"]).files
        asked = parse_qs(body.decode()).get("paths", []) if body else []
        answers = []
        for path in asked:
            path = path.strip("/")
            if path in files:
                answers.append(files[path].entry(path))
            elif any(name.startswith(path + "/") for name in files):
                answers.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        self._json(answers)

    def resolve(self, match, query, body) -> None:
        repo = self._repo((match["prefix"] or "models/").rstrip("/"), match["repo"])
        commit = self._commit(repo, match["rev"])
        stored = commit.files.get(match["path"])
        if stored is None:
            raise HubError(404, f"Entry not found: {match['path']}", "EntryNotFound")
        content, status = stored.content, 200
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{stored.sha256 if stored.lfs else stored.blob_id}"', "Accept-Ranges": "bytes"}
        asked = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if asked:
            first, last = asked.groups()
            size = len(content)
            start = max(size - int(last), 0) if first == "" else int(first)
            end = size - 1 if first == "" or last == "" else min(int(last), size - 1)
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            content, status = content[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, content, headers, content_type="application/octet-stream")


_KIND = r"(?P<kind>models|datasets|spaces)"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", rf"/api/{_KIND}/{_REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/{_KIND}/{_REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
    ("POST", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("POST", r"/lfs-verify", _Handler.lfs_verify),
    ("GET", rf"/api/{_KIND}/{_REPO}(?:/revision/(?P<rev>[^/]+))?", _Handler.repo_info),
    ("GET", rf"/api/{_KIND}/{_REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?", _Handler.tree),
    ("POST", rf"/api/{_KIND}/{_REPO}/paths-info/(?P<rev>[^/]+)", _Handler.paths_info),
    ("GET", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
]
