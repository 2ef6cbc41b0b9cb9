"""A small STEP client written for stepkit's tests, with the course
sheet's command line: --server_ip IP --id ID -f FILE (or --f FILE).

It logs in under the course rule, plans the upload with FILE SAVE, sends
every block with UPLOAD, and checks the MD5 the server reports. With
--fixed-block it ignores the plan's block_size, as some students' clients do.
"""
import argparse
import hashlib
import json
import os
import socket
import struct
import sys


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    return buf


def call(sock, msg, binary=b""):
    body = json.dumps(msg).encode("utf-8")
    sock.sendall(struct.pack(">II", len(body), len(binary)) + body + binary)
    j, b = struct.unpack(">II", recv_exact(sock, 8))
    resp = json.loads(recv_exact(sock, j).decode("utf-8"))
    recv_exact(sock, b)
    return resp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server_ip", "-server_ip", required=True)
    ap.add_argument("--id", "-id", required=True)
    ap.add_argument("-f", "--f", dest="file", required=True)
    ap.add_argument("--port", type=int, default=1379)
    ap.add_argument("--fixed-block", action="store_true",
                    help="the bug: cut the file in 20480-byte blocks whatever the plan says")
    a = ap.parse_args()
    data = open(a.file, "rb").read()
    sock = socket.create_connection((a.server_ip, a.port), timeout=10)
    r = call(sock, {"operation": "LOGIN", "direction": "REQUEST", "type": "AUTH",
                    "username": a.id, "password": hashlib.md5(a.id.encode()).hexdigest()})
    if r.get("status") != 200:
        sys.exit("login refused: %s" % r.get("status_msg"))
    token = r["token"]
    key = os.path.basename(a.file)
    r = call(sock, {"operation": "SAVE", "direction": "REQUEST", "type": "FILE",
                    "token": token, "key": key, "size": len(data)})
    if r.get("status") != 200:
        sys.exit("upload plan refused: %s" % r.get("status_msg"))
    size, total = r["block_size"], r["total_block"]
    if a.fixed_block:
        size = 20480
        total = (len(data) + size - 1) // size
    for i in range(total):
        r = call(sock, {"operation": "UPLOAD", "direction": "REQUEST", "type": "FILE",
                        "token": token, "key": key, "block_index": i}, data[i * size:(i + 1) * size])
        if r.get("status") != 200:
            sys.exit("block %d refused: %s" % (i, r.get("status_msg")))
    want = hashlib.md5(data).hexdigest()
    if r.get("md5") != want:
        sys.exit("md5 mismatch: server %s, file %s" % (r.get("md5"), want))
    print("uploaded %s (%d bytes, %d blocks), md5 %s" % (key, len(data), total, want))
    sock.close()


if __name__ == "__main__":
    main()
