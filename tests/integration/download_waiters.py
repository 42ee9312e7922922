#!/usr/bin/env python3
"""Clients of one streamed export that ask for bytes it has not made yet, as many at once.

    download_waiters.py SOCKET TOKEN_FILE POOL/IMAGE N STOP_FILE SECONDS

ExportImage (raw, stream set), then a reader that keeps the export alive (1 MiB every 0.25 s
from offset 0: the export stays held by back-pressure far behind the end), and, once the reader
has its first bytes, N waiters on connections of their own that ask again and again for 1 MiB
at the last MiB of the image, which the export cannot make before the reader gets there. Each
waiter's call waits on one of the daemon's request threads (at most a few seconds), or is
answered at once with no bytes when the daemon's waiting threads are all taken.

Runs until STOP_FILE exists or SECONDS passed (a bound). Prints "OP ID" (first, at once),
"READ BYTES" after each chunk of the reader, "READING" (once the reader has bytes), and at the end "WAITER I ANSWERS A EMPTY E" for each
waiter and "READER BYTES B"; "ERROR ..." and exit status 3 when a call fails.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upload_client import UnixConnection, decode, field  # noqa: E402

MIB = 1 << 20


def post(conn, token, method, body):
    conn.request("POST", "/imgstore.v1.ImageService/" + method, body,
                 {"Content-Type": "application/proto", "Authorization": "Bearer " + token})
    resp = conn.getresponse()
    return resp.status, resp.read()


def main():
    sock, token_file, spec, n, stop_file, seconds = sys.argv[1:7]
    n, end = int(n), time.monotonic() + float(seconds)
    token = open(token_file).read().split()[0]
    pool, image = spec.split("/", 1)
    conn = UnixConnection(sock)
    status, body = post(conn, token, "ExportImage",
                        field(1, field(1, pool) + field(2, image)) + field(3, "raw") +
                        field(6, 1))
    if status != 200:
        sys.exit("ExportImage: HTTP %d %s" % (status, body[:300]))
    op = decode(body)
    if not op.get(14):
        sys.exit("the daemon does not stream this export")
    op_id = op[1].decode()
    print("OP", op_id, flush=True)
    errors, lock = [], threading.Lock()

    def done():
        return os.path.exists(stop_file) or time.monotonic() > end or errors

    def fail(what):
        with lock:
            errors.append(what)

    reading = threading.Event()
    read = [0]

    def reader():
        while not done():
            status, body = post(conn, token, "DownloadChunk",
                                field(1, op_id) + field(2, read[0]) + field(3, MIB))
            if status != 200:
                return fail("reader: HTTP %d %s" % (status, body[:300]))
            m = decode(body)
            read[0] += len(m.get(1, b""))
            if read[0]:
                print("READ", read[0], flush=True)
                reading.set()
            if m.get(3):
                return fail("reader: the export ended at %d" % read[0])
            time.sleep(0.25)

    # the last MiB of the image (the caller says where: WAIT_AT, bytes; 63 MiB by default)
    far = int(os.environ.get("WAIT_AT", str(63 * MIB)))
    counts = [[0, 0] for _ in range(n)]

    def waiter(i):
        c = UnixConnection(sock)
        while not done():
            status, body = post(c, token, "DownloadChunk",
                                field(1, op_id) + field(2, far) + field(3, MIB))
            if status != 200:
                return fail("waiter %d: HTTP %d %s" % (i, status, body[:300]))
            counts[i][0] += 1
            if not decode(body).get(1, b""):
                counts[i][1] += 1
                time.sleep(0.05)  # answered at once, maybe: no busy loop

    r = threading.Thread(target=reader)
    r.start()
    while not reading.wait(0.1):
        if done():
            break
    print("READING", flush=True)
    ws = [threading.Thread(target=waiter, args=(i,)) for i in range(n)]
    for w in ws:
        w.start()
    for w in ws + [r]:
        w.join()
    for i, (a, e) in enumerate(counts):
        print("WAITER", i, "ANSWERS", a, "EMPTY", e)
    print("READER BYTES", read[0])
    for e in errors:
        print("ERROR", e)
    sys.stdout.flush()
    os._exit(3 if errors else 0)


if __name__ == "__main__":
    main()
