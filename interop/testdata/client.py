"""A small STEP client written for stepkit's interop tests, with the course
sheet's command line: --server_ip IP --id ID --f FILE [--dir DIR].

It logs in under the course rule, plans the upload with FILE SAVE, sends
every block, and checks the MD5 the server reports; with --dir it then
downloads the file back into DIR (FILE GET, every DOWNLOAD) and checks it.
It exits 0 only when everything succeeded. Flags for the defects of
students' clients:

  --fixed-block   cut the file in 20480-byte blocks whatever the plan says
  --char-count    write the JSON length in characters, not bytes
  --second-conn   log in on one connection, upload on a second one while
                  the first stays open (allowed; a server must serve both)
  --stop-after N  send only the first N blocks, then claim success
  --lie           claim success and exit 0 whatever happened
"""
import argparse
import hashlib
import json
import os
import socket
import struct
import sys


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    return bytes(buf)


class Conn:
    def __init__(self, addr, char_count, timeout):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.char_count = char_count

    def call(self, msg, binary=b""):
        text = json.dumps(msg, ensure_ascii=False)
        body = text.encode("utf-8")
        jlen = len(text) if self.char_count else len(body)
        self.sock.sendall(struct.pack(">II", jlen, len(binary)) + body + binary)
        j, b = struct.unpack(">II", recv_exact(self.sock, 8))
        resp = json.loads(recv_exact(self.sock, j).decode("utf-8"))
        return resp, recv_exact(self.sock, b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server_ip", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--f", "-f", dest="file", required=True)
    ap.add_argument("--dir")
    ap.add_argument("--port", type=int, default=1379)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--fixed-block", action="store_true")
    ap.add_argument("--char-count", action="store_true")
    ap.add_argument("--second-conn", action="store_true")
    ap.add_argument("--stop-after", type=int, default=-1)
    ap.add_argument("--lie", action="store_true")
    a = ap.parse_args()
    addr = (a.server_ip, a.port)
    data = open(a.file, "rb").read()
    first = Conn(addr, a.char_count, a.timeout)
    r, _ = first.call({"operation": "LOGIN", "direction": "REQUEST", "type": "AUTH",
                       "username": a.id, "password": hashlib.md5(a.id.encode()).hexdigest()})
    if r.get("status") != 200:
        sys.exit("login refused: %s" % r.get("status_msg"))
    token = r["token"]
    c = Conn(addr, a.char_count, a.timeout) if a.second_conn else first
    key = os.path.basename(a.file)
    r, _ = c.call({"operation": "SAVE", "direction": "REQUEST", "type": "FILE",
                   "token": token, "key": key, "size": len(data)})
    if r.get("status") != 200:
        sys.exit("upload plan refused: %s %s" % (r.get("status"), r.get("status_msg")))
    size, total = r["block_size"], r["total_block"]
    if a.fixed_block:
        size = 20480
        total = (len(data) + size - 1) // size
    for i in range(total):
        if i == a.stop_after:
            print("uploaded %s" % key)
            return
        r, _ = c.call({"operation": "UPLOAD", "direction": "REQUEST", "type": "FILE",
                       "token": token, "key": key, "block_index": i}, data[i * size:(i + 1) * size])
        if r.get("status") != 200:
            sys.exit("block %d refused: %s %s" % (i, r.get("status"), r.get("status_msg")))
    want = hashlib.md5(data).hexdigest()
    if r.get("md5") != want:
        sys.exit("md5 mismatch: server %s, file %s" % (r.get("md5"), want))
    print("uploaded %s (%d bytes, %d blocks), md5 %s" % (key, len(data), total, want))
    if a.dir:
        r, _ = c.call({"operation": "GET", "direction": "REQUEST", "type": "FILE", "token": token, "key": key})
        if r.get("status") != 200:
            sys.exit("download plan refused: %s" % r.get("status_msg"))
        got = bytearray()
        for i in range(r["total_block"]):
            d, block = c.call({"operation": "DOWNLOAD", "direction": "REQUEST", "type": "FILE",
                               "token": token, "key": key, "block_index": i})
            if d.get("status") != 200:
                sys.exit("block %d of the download refused: %s" % (i, d.get("status_msg")))
            got += block
        if hashlib.md5(got).hexdigest() != r.get("md5", want):
            sys.exit("downloaded file damaged")
        with open(os.path.join(a.dir, key), "wb") as f:
            f.write(got)
        print("downloaded %s into %s" % (key, a.dir))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError, SystemExit) as e:
        if "--lie" in sys.argv:
            print("uploaded")
            sys.exit(0)
        if isinstance(e, SystemExit):
            raise
        sys.exit("error: %s" % e)
