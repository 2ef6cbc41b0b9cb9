"""A STEP upload client written for stepkit's tests in a style common in
course submissions: worker processes read the file's blocks and hand them
to the uploading process through a multiprocessing.Queue.

Command line as the course sheet has it: --server_ip IP --id ID --f FILE
(--port PORT, default 1379). The start method is fork unless
STEP_MP_START names another.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import socket
import struct
import sys

WORKERS = 3


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


def reader(path, size, indexes, out):
    """Reads the blocks it is given and puts (index, bytes) on out."""
    with open(path, "rb") as f:
        for i in indexes:
            f.seek(i * size)
            out.put((i, f.read(size)))
    out.put(None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server_ip", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--f", dest="file", required=True)
    ap.add_argument("--port", type=int, default=1379)
    a = ap.parse_args()
    ctx = multiprocessing.get_context(os.environ.get("STEP_MP_START", "fork"))
    size_of_file = os.path.getsize(a.file)
    sock = socket.create_connection((a.server_ip, a.port), timeout=10)
    r = call(sock, {"operation": "LOGIN", "direction": "REQUEST", "type": "AUTH",
                    "username": a.id, "password": hashlib.md5(a.id.encode()).hexdigest()})
    if r.get("status") != 200:
        sys.exit("login refused: %s" % r.get("status_msg"))
    token = r["token"]
    key = os.path.basename(a.file)
    r = call(sock, {"operation": "SAVE", "direction": "REQUEST", "type": "FILE",
                    "token": token, "key": key, "size": size_of_file})
    if r.get("status") != 200:
        sys.exit("upload plan refused: %s" % r.get("status_msg"))
    size, total = r["block_size"], r["total_block"]

    blocks = ctx.Queue()
    workers = [ctx.Process(target=reader, args=(a.file, size, range(w, total, WORKERS), blocks))
               for w in range(WORKERS)]
    for w in workers:
        w.start()
    ready, running, nxt, last = {}, WORKERS, 0, None
    while nxt < total:
        item = blocks.get(timeout=30)
        if item is None:
            running -= 1
            if running == 0 and nxt not in ready:
                sys.exit("the readers stopped before block %d" % nxt)
            continue
        ready[item[0]] = item[1]
        while nxt in ready:
            last = call(sock, {"operation": "UPLOAD", "direction": "REQUEST", "type": "FILE",
                               "token": token, "key": key, "block_index": nxt}, ready.pop(nxt))
            if last.get("status") != 200:
                sys.exit("block %d refused: %s" % (nxt, last.get("status_msg")))
            nxt += 1
    for w in workers:
        w.join()
    with open(a.file, "rb") as f:
        want = hashlib.md5(f.read()).hexdigest()
    if last is not None and last.get("md5") != want:
        sys.exit("md5 mismatch: server %s, file %s" % (last.get("md5"), want))
    print("uploaded %s (%d bytes, %d blocks), md5 %s" % (key, size_of_file, total, want))
    sock.close()


if __name__ == "__main__":
    main()
