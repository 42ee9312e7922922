#!/usr/bin/env python3
"""A webhook receiver for the alert test: answers 500 to the first N POSTs, 200 to the rest.

    webhook_receiver.py PORT_FILE LOG_FILE FAIL_FIRST

Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening). Every POST appends one
line to LOG_FILE: {"n": attempt number, "status": the answer, "at": unix seconds, "body": the
JSON body as received (null if it is not JSON)}.
"""
import http.server
import json
import os
import sys
import threading
import time

port_file, log_file, fail_first = sys.argv[1], sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            count += 1
            n = count
            status = 500 if n <= fail_first else 200
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            with open(log_file, "a") as f:
                f.write(json.dumps({"n": n, "status": status, "at": time.time(), "body": doc,
                                    "content_type": self.headers.get("Content-Type")}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
