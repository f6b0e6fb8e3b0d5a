"""A local stand-in for the Hugging Face Hub's upload endpoints, for push tests on 127.0.0.1.

It implements what huggingface_hub's create_repo / create_branch / create_commit call (repo create,
README metadata validation, branch, preupload, commit; every file answered as a regular git upload,
so no LFS / Xet) and stores what arrives. Anything else is recorded and answered 404.
"""

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"


class HubServer:
    def __init__(self, forbidden: bool = False):
        self.forbidden = forbidden
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth_headers: list[str] = []
        self.created: list[dict] = []  # /api/repos/create payloads
        self.branches: list[str] = []
        self.commits: list[dict] = []  # {"repo", "revision", "files": {path: bytes}, "header"}
        self.bodies: list[bytes] = []  # every request body, to search for leaked secrets
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                server.requests.append(("GET", self.path))
                self._reply(403 if server.forbidden else 404, {"error": "not implemented by the test server"})

            def do_POST(self):
                path = self.path.split("?")[0]
                server.requests.append(("POST", path))
                server.auth_headers.append(self.headers.get("Authorization", ""))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.bodies.append(body)
                if server.forbidden:
                    return self._reply(
                        403, {"error": "You don't have the rights to create a model under this namespace"}
                    )
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    server.created.append(payload)
                    return self._reply(200, {"url": f"{server.url}/{payload['organization']}/{payload['name']}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(REPO + r"/branch/(?P<rev>[^/]+)", path):
                    server.branches.append(m["rev"])
                    return self._reply(200, {})
                if m := re.fullmatch(REPO + r"/preupload/(?P<rev>[^/]+)", path):
                    files = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                        for f in json.loads(body)["files"]
                    ]
                    return self._reply(200, {"files": files, "commitOid": "0" * 40})
                if m := re.fullmatch(REPO + r"/commit/(?P<rev>[^/]+)", path):
                    commit = {"repo": m["repo"], "revision": m["rev"], "files": {}, "header": None}
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            commit["header"] = item["value"]
                        elif item["key"] == "file":
                            commit["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        else:
                            return self._reply(400, {"error": f"unexpected commit item {item['key']}"})
                    server.commits.append(commit)
                    return self._reply(
                        200, {"commitUrl": f"{server.url}/{m['repo']}/commit/{'1' * 40}", "commitOid": "1" * 40}
                    )
                return self._reply(404, {"error": f"not implemented by the test server: {path}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
