"""A remote-write receiver in front of a real one, for loadagent's tests: it answers the
first --fail-first POSTs with --status (500: the receiver is in trouble; 400: the batch is
refused), then forwards each POST to --upstream (a Prometheus with its remote-write receiver)
and answers what it answered. GET /stats tells what came: every POST's body hash, and which
were forwarded."""
import argparse
import hashlib
import http.server
import json
import sys
import threading
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--upstream", default="")
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--status", type=int, default=500)
args = parser.parse_args()

lock = threading.Lock()
posts = []       # sha256 of every POST body, in order
headers = []     # the Authorization and X-Scope-OrgID headers of every POST
forwarded = []   # sha256 of every body the upstream accepted


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        with lock:
            body = json.dumps({"posts": posts, "forwarded": forwarded, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        digest = hashlib.sha256(body).hexdigest()
        with lock:
            posts.append(digest)
            headers.append([self.headers.get("Authorization", ""), self.headers.get("X-Scope-OrgID", "")])
            fail = len(posts) <= args.fail_first or not args.upstream
        if fail:
            self.send_response(args.status)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"nope")
            return
        request = urllib.request.Request(args.upstream, data=body, method="POST")
        for h in ("Content-Encoding", "Content-Type", "X-Prometheus-Remote-Write-Version", "Authorization"):
            if self.headers.get(h):
                request.add_header(h, self.headers[h])
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as e:
            status = e.code
        if 200 <= status < 300:
            with lock:
                forwarded.append(digest)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
