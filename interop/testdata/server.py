"""A small STEP file server written for stepkit's interop tests.

It serves LOGIN (course rule: the password is the MD5 of the username),
FILE SAVE, UPLOAD, GET, DOWNLOAD, DATA SAVE, GET, DELETE and BYE, one thread per connection, and
keeps completed files under ./storage/USER/KEY. Flags:

  --port N          listen on N (default 1379)
  --block-size N    plan uploads and downloads with blocks of N bytes (default 20480)
  --single          the defect: serve one connection at a time, in the main thread
  --crash-on-upload the defect: exit with status 3 at the first UPLOAD
  --users N         the defect: refuse the logins of any user after the first N
                    users it saw (a server that wears out with use)
"""
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import uuid

CRASH_ON_UPLOAD = False
MAX_USERS = 0


def recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def send(conn, msg, binary=b""):
    body = json.dumps(msg, ensure_ascii=False).encode("utf-8")
    conn.sendall(struct.pack(">II", len(body), len(binary)) + body + binary)


class Server:
    def __init__(self, block_size):
        self.block_size = block_size
        self.tokens = {}
        self.docs = {}
        self.uploads = {}  # (user, key) -> {"size", "blocks": {index: bytes}}
        self.lock = threading.Lock()

    def path(self, user, key):
        return os.path.join("storage", user, key)

    def reply(self, req, status, msg, **fields):
        out = {"operation": req.get("operation"), "direction": "RESPONSE",
               "type": req.get("type"), "status": status, "status_msg": msg}
        out.update(fields)
        return out

    def total(self, size):
        return (size + self.block_size - 1) // self.block_size

    def handle(self, req, binary):
        op, typ = req.get("operation"), req.get("type")
        if op == "LOGIN":
            user, pw = req.get("username"), req.get("password")
            if not isinstance(user, str) or not isinstance(pw, str) or user == "":
                return self.reply(req, 410, "username and password must be strings"), b""
            if pw.lower() != hashlib.md5(user.encode("utf-8")).hexdigest():
                return self.reply(req, 401, "wrong password"), b""
            token = uuid.uuid4().hex
            with self.lock:
                seen = set(self.tokens.values())
                if MAX_USERS and user not in seen and len(seen) >= MAX_USERS:
                    return self.reply(req, 401, "too many users"), b""
                self.tokens[token] = user
            return self.reply(req, 200, "OK", token=token), b""
        user = self.tokens.get(req.get("token")) if isinstance(req.get("token"), str) else None
        if user is None:
            return self.reply(req, 403, "bad token"), b""
        if typ == "DATA":
            return self.data_op(req, user), b""
        if typ != "FILE":
            return self.reply(req, 409, "bad type"), b""
        key = req.get("key")
        if not isinstance(key, str) or key == "" or "/" in key:
            return self.reply(req, 410, "bad key"), b""
        if op == "SAVE":
            size = req.get("size")
            if not isinstance(size, int) or size < 0:
                return self.reply(req, 410, "bad size"), b""
            with self.lock:
                if os.path.exists(self.path(user, key)):
                    return self.reply(req, 402, "key exists", key=key), b""
                self.uploads[(user, key)] = {"size": size, "blocks": {}}
            return self.reply(req, 200, "This is the upload plan.", key=key, size=size,
                              block_size=self.block_size, total_block=self.total(size)), b""
        if op == "UPLOAD":
            if CRASH_ON_UPLOAD:
                os._exit(3)
            idx = req.get("block_index")
            with self.lock:
                up = self.uploads.get((user, key))
                if up is None:
                    return self.reply(req, 408, "no upload in progress", key=key), b""
                total = self.total(up["size"])
                if not isinstance(idx, int) or idx < 0:
                    return self.reply(req, 410, "bad block_index", key=key), b""
                if idx >= total:
                    return self.reply(req, 405, "block_index out of range", key=key, block_index=idx), b""
                want = min(self.block_size, up["size"] - idx * self.block_size)
                if len(binary) != want:
                    return self.reply(req, 406, "block %d must be %d bytes" % (idx, want), key=key, block_index=idx), b""
                up["blocks"][idx] = binary
                if len(up["blocks"]) < total:
                    return self.reply(req, 200, "block stored", key=key, block_index=idx), b""
                data = b"".join(up["blocks"][i] for i in range(total))
                del self.uploads[(user, key)]
                os.makedirs(os.path.join("storage", user), exist_ok=True)
                with open(self.path(user, key), "wb") as f:
                    f.write(data)
            return self.reply(req, 200, "upload complete", key=key, block_index=idx,
                              md5=hashlib.md5(data).hexdigest()), b""
        if op in ("GET", "DOWNLOAD"):
            try:
                data = open(self.path(user, key), "rb").read()
            except OSError:
                return self.reply(req, 404, "no such file", key=key), b""
            if op == "GET":
                return self.reply(req, 200, "This is the download plan.", key=key, size=len(data),
                                  block_size=self.block_size, total_block=self.total(len(data)),
                                  md5=hashlib.md5(data).hexdigest()), b""
            idx = req.get("block_index")
            if not isinstance(idx, int) or idx < 0 or idx >= self.total(len(data)):
                return self.reply(req, 405, "bad block_index", key=key), b""
            block = data[idx * self.block_size:(idx + 1) * self.block_size]
            return self.reply(req, 200, "block", key=key, block_index=idx), block
        return self.reply(req, 408, "not served"), b""

    def data_op(self, req, user):
        op, key = req.get("operation"), req.get("key")
        if op == "SAVE" and key is None:
            key = uuid.uuid4().hex
        if not isinstance(key, str) or key == "":
            return self.reply(req, 410, "bad key")
        with self.lock:
            store = self.docs.setdefault(user, {})
            if op == "SAVE":
                if key in store:
                    return self.reply(req, 402, "key exists", key=key)
                store[key] = {k: v for k, v in req.items()
                              if k not in ("operation", "direction", "type", "token", "key")}
                return self.reply(req, 200, "OK", key=key)
            if key not in store:
                return self.reply(req, 404, "no such key", key=key)
            if op == "GET":
                out = self.reply(req, 200, "OK", key=key)
                for k, v in store[key].items():
                    out.setdefault(k, v)
                return out
            if op == "DELETE":
                del store[key]
                return self.reply(req, 200, "OK", key=key)
        return self.reply(req, 408, "not served")

    def serve(self, conn):
        try:
            while True:
                j, b = struct.unpack(">II", recv_exact(conn, 8))
                if j > 1 << 20 or b > 1 << 20:
                    send(conn, {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR",
                                "status": 413, "status_msg": "frame too large"})
                    return
                raw = recv_exact(conn, j)
                binary = recv_exact(conn, b)
                try:
                    req = json.loads(raw.decode("utf-8"))
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError:
                    send(conn, {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR",
                                "status": 400, "status_msg": "bad JSON"})
                    continue
                if req.get("operation") == "BYE":
                    send(conn, self.reply(req, 200, "bye"))
                    return
                resp, block = self.handle(req, binary)
                send(conn, resp, block)
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            conn.close()


def main(argv):
    global CRASH_ON_UPLOAD, MAX_USERS
    port, block_size, single = 1379, 20480, False
    i = 0
    while i < len(argv):
        if argv[i] == "--port":
            port = int(argv[i + 1])
            i += 1
        elif argv[i] == "--block-size":
            block_size = int(argv[i + 1])
            i += 1
        elif argv[i] == "--single":
            single = True
        elif argv[i] == "--crash-on-upload":
            CRASH_ON_UPLOAD = True
        elif argv[i] == "--users":
            MAX_USERS = int(argv[i + 1])
            i += 1
        i += 1
    srv = Server(block_size)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("listening on 127.0.0.1:%d, block_size %d" % (port, block_size), flush=True)
    while True:
        conn, _ = ls.accept()
        if single:
            srv.serve(conn)
        else:
            threading.Thread(target=srv.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
