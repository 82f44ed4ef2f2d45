#!/usr/bin/env python3
"""Smart-HTTP git remote for tests: `git http-backend` behind HTTP Basic auth.

Serves every repository under --root at http://127.0.0.1:PORT/<path>.git, requiring
`Authorization: Basic base64(USER:TOKEN)` (any user name, password == --token) for every
request, as GitHub/GitLab/Gitea do for private repositories; answers 401 with
WWW-Authenticate otherwise so git asks its credential helper. Prints "PORT <n>" once
listening. Each request line (method, path, whether credentials were sent and valid) is
appended to --log; credentials themselves are never logged.

usage: git_http.py --root DIR --token TOKEN [--port 0] [--log FILE]
"""

import argparse
import base64
import os
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    a = ap.parse_args()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, fmt, *args):
            pass

        def note(self, line):
            if a.log:
                with open(a.log, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

        def handle_git(self):
            parts = urlsplit(self.path)
            auth = self.headers.get("Authorization", "")
            ok = False
            if auth.startswith("Basic "):
                try:
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    ok = pw == a.token and bool(user)
                except ValueError:
                    ok = False
            self.note(f"{self.command} {parts.path} auth={'valid' if ok else ('invalid' if auth else 'none')}")
            if not ok:
                body = b"Authentication required\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            env = dict(os.environ)
            env.update({
                "GIT_PROJECT_ROOT": a.root, "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(data)),
                "REMOTE_USER": "runner", "REMOTE_ADDR": "127.0.0.1",
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true",
            })
            p = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True)
            head, _, body = p.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                if not line:
                    continue
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                else:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = handle_git
        do_POST = handle_git

    srv = ThreadingHTTPServer(("127.0.0.1", a.port), H)
    srv.daemon_threads = True
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
