#!/usr/bin/env python3
"""A client that starts a streamed import and gives up half-way, as a killed CLI would.

    upload_client.py SOCKET TOKEN_FILE FILE POOL/IMAGE STOP_BYTES [swapped]

BeginUpload for FILE's size, ImportImage with while_uploading, then chunks of 1 MiB in order
until STOP_BYTES were sent; prints "UPLOAD_ID OPERATION_ID" and exits without closing
anything properly. With "swapped", the chunks go in pairs, the second of each pair first (as
several connections deliver them), and before them one chunk past the daemon's window, which
must be refused ("WINDOW_REFUSED" printed first). Speaks the Connect protocol (application/proto) over the Unix socket;
the few protobuf fields it needs are encoded by hand (no protobuf module needed).
"""
import http.client
import os
import socket
import sys


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def decode(buf):
    """Field number -> first value (int or bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, v)
    return out


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def call(conn, token, method, body):
    conn.request("POST", "/imgstore.v1.ImageService/" + method, body,
                 {"Content-Type": "application/proto", "Authorization": "Bearer " + token})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit("%s: HTTP %d %s" % (method, resp.status, data[:300]))
    return decode(data)


def main():
    sock, token_file, path, spec, stop = sys.argv[1:6]
    token = open(token_file).read().split()[0]
    pool, image = spec.split("/", 1)
    size = os.path.getsize(path)
    conn = UnixConnection(sock)
    begin = call(conn, token, "BeginUpload", field(1, size))
    upload_id = begin[1].decode()
    if not begin.get(3):
        sys.exit("the daemon does not import while uploading")
    spec_msg = field(1, pool) + field(2, image)
    op = call(conn, token, "ImportImage",
              field(1, spec_msg) + field(3, upload_id) + field(9, 1))
    swapped = len(sys.argv) > 6 and sys.argv[6] == "swapped"
    chunk = lambda off, data: field(1, upload_id) + field(2, off) + field(3, data)
    if swapped:
        window = begin.get(4, 0)
        conn.request("POST", "/imgstore.v1.ImageService/UploadChunk", chunk(window, b"x" * 4096),
                     {"Content-Type": "application/proto", "Authorization": "Bearer " + token})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 and b"a chunk may end at most" in body:
            print("WINDOW_REFUSED")
    with open(path, "rb") as f:
        off = 0
        while off < int(stop):
            first = f.read(1 << 20)
            if not first:
                break
            second = f.read(1 << 20) if swapped else b""
            if second:
                call(conn, token, "UploadChunk", chunk(off + len(first), second))
            call(conn, token, "UploadChunk", chunk(off, first))
            off += len(first) + len(second)
    print(upload_id, op[1].decode())
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
