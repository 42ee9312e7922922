#!/usr/bin/env python3
"""A client of a streamed export, as the CLI is, that can pause or give up half-way.

    download_client.py SOCKET TOKEN_FILE POOL/IMAGE FORMAT OUT STOP_BYTES [PAUSE_AT:SECONDS]

ExportImage with stream set, then DownloadChunk of 1 MiB in order into OUT until STOP_BYTES
were read or the stream ended; with PAUSE_AT:SECONDS it stops reading for SECONDS once it has
PAUSE_AT bytes (the export waits meanwhile). Prints "OP ID", "FIRST MS BYTES" (the first
chunk, asked at once: how long it waited and what it got), "EMPTY N" (chunks that came back
empty: the bytes were not made yet), then "EOF N" or "STOPPED N", and exits without closing
anything properly. An error of a chunk: "ERROR HTTP-STATUS BODY", exit status 3. Speaks the
Connect protocol (application/proto) over the Unix socket, fields encoded by hand as
upload_client.py does. With DL_NO_STREAM=1 in the environment it asks as a client older than
the streamed export does (no stream field): the daemon must not stream; the client waits for
the operation to succeed (GetOperation), then reads the spooled file. With DL_OUT_OF_ORDER=1
it asks as a client with several chunks in flight may be answered: windows of 1 MiB, each
fetched to its end with skip_zeros and within_length, in groups of eight with the first of
each group last (7 MiB answered past a gap, more than the 4 MiB the daemon keeps behind the
first byte not sent); it prints "ANYORDER 1" when the daemon says in_any_order, and fails
when an answer passes its window.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upload_client import UnixConnection, decode, field  # noqa: E402


def post(conn, token, method, body, service="ImageService"):
    conn.request("POST", "/imgstore.v1.%s/%s" % (service, method), body,
                 {"Content-Type": "application/proto", "Authorization": "Bearer " + token})
    resp = conn.getresponse()
    return resp.status, resp.read()


def main():
    sock, token_file, spec, fmt, out, stop = sys.argv[1:7]
    pause_at, pause_s = -1, 0.0
    if len(sys.argv) > 7:
        a, b = sys.argv[7].split(":")
        pause_at, pause_s = int(a), float(b)
    token = open(token_file).read().split()[0]
    pool, image = spec.split("/", 1)
    conn = UnixConnection(sock)
    old = os.environ.get("DL_NO_STREAM") == "1"
    status, body = post(conn, token, "ExportImage",
                        field(1, field(1, pool) + field(2, image)) + field(3, fmt) +
                        (b"" if old else field(6, 1)))
    if status != 200:
        sys.exit("ExportImage: HTTP %d %s" % (status, body[:300]))
    op = decode(body)
    if bool(op.get(14)) == old:
        sys.exit("the daemon %s this export" % ("streams" if old else "does not stream"))
    op_id = op[1].decode()
    print("OP", op_id)
    sys.stdout.flush()
    while old:  # as an older CLI: the download once the export is done
        status, body = post(conn, token, "GetOperation", field(1, op_id), "OperationService")
        state = decode(body).get(4, 0) if status == 200 else -1
        if state == 3:
            break
        if state not in (0, 1, 2):
            print("ERROR", status, "the export ended in state %d" % state)
            sys.stdout.flush()
            os._exit(3)
        time.sleep(0.2)
    if os.environ.get("DL_OUT_OF_ORDER") == "1":
        out_of_order(conn, token, op_id, out, int(stop), pause_at, pause_s)
    off, empty, first = 0, 0, True
    with open(out, "wb") as f:
        while off < int(stop):
            if off >= pause_at >= 0:
                time.sleep(pause_s)
                pause_at = -1
            t0 = time.monotonic()
            status, body = post(conn, token, "DownloadChunk",
                                field(1, op_id) + field(2, off) + field(3, 1 << 20))
            if status != 200:
                print("ERROR", status, body[:300].decode(errors="replace"))
                sys.stdout.flush()
                os._exit(3)
            m = decode(body)
            data = m.get(1, b"")
            if first:
                print("FIRST", int((time.monotonic() - t0) * 1000), len(data))
                first = False
            if not data:
                empty += 1
            f.write(data)
            off += len(data)
            if m.get(3):
                print("EMPTY", empty)
                print("EOF", off)
                sys.stdout.flush()
                os._exit(0)
    print("EMPTY", empty)
    print("STOPPED", off)
    sys.stdout.flush()
    os._exit(0)


def out_of_order(conn, token, op_id, out, stop, pause_at, pause_s):
    win, group = 1 << 20, 8
    size, done, empty, anyorder = None, 0, 0, False
    with open(out, "wb") as f:
        base = 0
        while (size is None or base < size) and done < stop:
            for k in list(range(1, group)) + [0]:
                pos, end = base + k * win, base + (k + 1) * win
                while pos < end and (size is None or pos < size):
                    if done >= pause_at >= 0:
                        time.sleep(pause_s)
                        pause_at = -1
                    status, body = post(conn, token, "DownloadChunk",
                                        field(1, op_id) + field(2, pos) + field(3, end - pos) +
                                        field(4, 1) + field(5, 1))
                    if status != 200:
                        print("ERROR", status, body[:300].decode(errors="replace"))
                        sys.stdout.flush()
                        os._exit(3)
                    m = decode(body)
                    data, zeros = m.get(1, b""), m.get(4, 0)
                    anyorder = anyorder or bool(m.get(5))
                    if len(data) + zeros > end - pos:
                        print("ERROR 200 an answer of %d bytes passes its window at %d" %
                              (len(data) + zeros, pos))
                        sys.stdout.flush()
                        os._exit(3)
                    if m.get(3):
                        size = m.get(2, 0)
                    if not data and not zeros:
                        if not m.get(3):
                            empty += 1
                            time.sleep(0.01)
                        continue
                    f.seek(pos)
                    f.write(data)
                    pos += len(data) + zeros
                    done += len(data) + zeros
            base += group * win
        if size is not None:
            f.truncate(size)
    print("ANYORDER", int(anyorder))
    print("EMPTY", empty)
    print("EOF" if size is not None and done >= size else "STOPPED", done)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
