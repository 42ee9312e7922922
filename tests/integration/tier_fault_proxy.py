#!/usr/bin/env python3
"""A small HTTP proxy that sits between imgstore and radosgw and injects faults by plan.

    tier_fault_proxy.py --upstream http://127.0.0.1:PORT --port-file FILE

It listens on a free port of 127.0.0.1 (written to FILE) and forwards every request unchanged
(the Host header too, so SigV4 signatures still verify) to the upstream. Control requests,
never forwarded:

    GET /__fault__/plan?actions=500,503,drop,slow:2,ok   queue actions for the next requests
    GET /__fault__/always?action=503                     every request gets it ("" to stop)
    GET /__fault__/stats                                 "requests=N injected=M"
    GET /__fault__/corrupt?path=manifests/              flip a byte of the body of every GET
                                                         answer whose path holds it ("" to stop)

Actions: 500, 503 (an S3 error answer), drop (close the connection without an answer), slow:N
(wait N seconds, then forward), ok (forward).
"""
import argparse
import http.client
import http.server
import os
import socketserver
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATE = {"plan": [], "always": "", "corrupt": "", "requests": 0, "injected": 0}
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def control(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        body = b"ok\n"
        with LOCK:
            if u.path == "/__fault__/plan":
                STATE["plan"] = [a for a in q.get("actions", [""])[0].split(",") if a]
            elif u.path == "/__fault__/always":
                STATE["always"] = q.get("action", [""])[0]
            elif u.path == "/__fault__/corrupt":
                STATE["corrupt"] = q.get("path", [""])[0]
            elif u.path == "/__fault__/stats":
                body = ("requests=%d injected=%d\n" % (STATE["requests"], STATE["injected"])).encode()
            elif u.path == "/__fault__/reset":
                STATE.update(plan=[], always="", corrupt="", requests=0, injected=0)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        if self.path.startswith("/__fault__/"):
            return self.control()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with LOCK:
            STATE["requests"] += 1
            action = STATE["always"] or (STATE["plan"].pop(0) if STATE["plan"] else "ok")
            if action != "ok":
                STATE["injected"] += 1
        if action in ("500", "503"):
            msg = ("<?xml version=\"1.0\"?><Error><Code>%s</Code></Error>" %
                   ("InternalError" if action == "500" else "SlowDown")).encode()
            self.send_response(int(action))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(msg)
            return
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if action.startswith("slow"):
            time.sleep(float(action.split(":")[1]) if ":" in action else 2.0)
        up = urllib.parse.urlparse(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body if (body or self.command == "PUT") else None,
                     headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        with LOCK:
            corrupt = STATE["corrupt"]
        if corrupt and self.command == "GET" and corrupt in self.path and resp.status == 200 and data:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
            with LOCK:
                STATE["injected"] += 1
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                                 int(resp.getheader("Content-Length") or 0)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    Handler.upstream = a.upstream
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
