"""A course-style STEP upload client written for stepkit's tests, with one
defect that course clients really have: after LOGIN it rebuilds the course
token from the username and its own clock (the public recipe) and gives up
with "Token is incorrect!" when the server's token differs. Otherwise it
uploads as a course client should: every response read whole, the plan's
block_size followed, the token sent back, the MD5 checked.

    python3 tokenclient.py --server_ip IP [--port P] --id ID -f FILE [--go-on]
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

SALT = "kjh20)*(1"


def expected_token(username):
    head = "%s.%s.login" % (username.replace(".", "_"),
                            time.strftime("%Y%m%d%H%M%S", time.localtime(time.time())))
    sig = hashlib.md5((head + SALT).encode()).hexdigest()
    return base64.b64encode(("%s.%s" % (head, sig)).encode()).decode()


def read_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("the server closed the connection")
        buf += part
    return buf


def request(sock, fields, block=b""):
    body = json.dumps(fields).encode()
    sock.sendall(struct.pack("!II", len(body), len(block)) + body + block)
    jlen, blen = struct.unpack("!II", read_exactly(sock, 8))
    reply = json.loads(read_exactly(sock, jlen).decode())
    read_exactly(sock, blen)
    return reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server_ip", "-server_ip", required=True)
    ap.add_argument("--port", "-port", type=int, default=1379)
    ap.add_argument("--id", "-id", required=True)
    ap.add_argument("-f", "--f", dest="file", required=True)
    ap.add_argument("--go-on", action="store_true",
                    help="only complain about the token, then upload with it")
    a = ap.parse_args()
    data = open(a.file, "rb").read()
    sock = socket.create_connection((a.server_ip, a.port), timeout=5)
    base = {"direction": "REQUEST"}
    r = request(sock, dict(base, operation="LOGIN", type="AUTH", username=a.id,
                           password=hashlib.md5(a.id.encode()).hexdigest()))
    if r.get("status") != 200 or "token" not in r:
        sys.exit("login failed: %s" % r.get("status_msg"))
    if r["token"] != expected_token(a.id):
        print("Token is incorrect!")
        if not a.go_on:
            return 0  # as the course clients do: give up, with exit status 0
    token = r["token"]
    key = os.path.basename(a.file)
    r = request(sock, dict(base, operation="SAVE", type="FILE", token=token, key=key, size=len(data)))
    if r.get("status") != 200:
        sys.exit("upload plan refused: %s" % r.get("status_msg"))
    key, size, total = r["key"], r["block_size"], r["total_block"]
    for i in range(total):
        r = request(sock, dict(base, operation="UPLOAD", type="FILE", token=token, key=key, block_index=i),
                    data[i * size:(i + 1) * size])
        if r.get("status") != 200:
            sys.exit("block %d refused: %s" % (i, r.get("status_msg")))
    want = hashlib.md5(data).hexdigest()
    if total and r.get("md5") != want:
        sys.exit("md5 mismatch: server %s, file %s" % (r.get("md5"), want))
    print("uploaded %s, md5 %s" % (key, want))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
