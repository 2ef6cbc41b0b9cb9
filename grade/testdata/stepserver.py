"""A small STEP server written for stepkit's grading tests.

It serves LOGIN, DATA SAVE/GET/DELETE and BYE, and is told by flags to
misbehave the ways students' servers do:

  --port N      listen on N (default 1379)
  --only-1379   ignore --port and bind 1379 anyway
  --defect      answer DATA GET of an unknown key 400 instead of 404
  --single      serve one connection at a time, in the main thread
  --alloc       allocate memory without bound on the first request
  --die         fail at start: open a log file in a folder that is not there
  --hang        never listen
  --mute OPS    never answer FILE requests of these operations (UPLOAD,DOWNLOAD);
                the connection stays open
  --persist DIR also write every DATA SAVE to DIR/KEY.json; when that fails,
                print the traceback and answer 400
"""
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
import uuid


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def send(conn, msg):
    body = json.dumps(msg).encode("utf-8")
    conn.sendall(struct.pack(">II", len(body), 0) + body)


class Server:
    def __init__(self, opts):
        self.opts = opts
        self.tokens = {}
        self.data = {}
        self.lock = threading.Lock()

    def reply(self, req, status, msg, **fields):
        out = {"operation": req.get("operation"), "direction": "RESPONSE",
               "type": req.get("type"), "status": status, "status_msg": msg}
        out.update(fields)
        return out

    def handle(self, req):
        for f in ("operation", "direction", "type"):
            if f not in req:
                return {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR",
                        "status": 400, "status_msg": "missing field " + f}
        if req["direction"] != "REQUEST":
            return {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR", "status": 407, "status_msg": "bad direction"}
        if req["operation"] not in ("SAVE", "DELETE", "GET", "UPLOAD", "DOWNLOAD", "BYE", "LOGIN"):
            return {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR", "status": 408, "status_msg": "bad operation"}
        if req["type"] not in ("FILE", "DATA", "AUTH"):
            return {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR", "status": 409, "status_msg": "bad type"}
        op, typ = req["operation"], req["type"]
        if op == "LOGIN":
            if typ != "AUTH":
                return self.reply(req, 409, "LOGIN is AUTH")
            user, pw = req.get("username"), req.get("password")
            if not isinstance(user, str) or not isinstance(pw, str) or user == "":
                return self.reply(req, 410, "username and password must be strings")
            if pw.lower() != hashlib.md5(user.encode("utf-8")).hexdigest():
                return self.reply(req, 401, "wrong password")
            token = uuid.uuid4().hex
            with self.lock:
                self.tokens[token] = user
            return self.reply(req, 200, "OK", token=token)
        if typ == "AUTH":
            return self.reply(req, 409, "AUTH is for LOGIN")
        user = self.tokens.get(req.get("token")) if isinstance(req.get("token"), str) else None
        if user is None:
            return self.reply(req, 403, "bad token", type="AUTH")
        if typ != "DATA" or op in ("UPLOAD", "DOWNLOAD"):
            return self.reply(req, 408, "not served here")
        key = req.get("key")
        if op == "SAVE" and key is None:
            key = str(uuid.uuid4())
        if not isinstance(key, str) or key == "":
            return self.reply(req, 410, "key must be a string")
        with self.lock:
            store = self.data.setdefault(user, {})
            if op == "SAVE":
                if key in store:
                    return self.reply(req, 402, "key exists", key=key)
                doc = {k: v for k, v in req.items() if k not in ("operation", "direction", "type", "token", "key")}
                if self.opts.get("persist"):
                    try:
                        with open(os.path.join(self.opts["persist"], key + ".json"), "w") as f:
                            json.dump(doc, f)
                    except OSError:
                        traceback.print_exc()
                        return self.reply(req, 400, "could not store the value")
                store[key] = doc
                return self.reply(req, 200, "OK", key=key)
            if key not in store:
                return self.reply(req, 400 if self.opts.get("defect") else 404, "no such key", key=key)
            if op == "GET":
                out = self.reply(req, 200, "OK", key=key)
                for k, v in store[key].items():
                    out.setdefault(k, v)
                return out
            del store[key]
            return self.reply(req, 200, "OK", key=key)

    def serve(self, conn):
        hog = []
        try:
            while True:
                j, b = struct.unpack(">II", recv_exact(conn, 8))
                if self.opts.get("alloc"):
                    while True:  # the bug: keep everything, forever
                        hog.append(bytearray(64 << 20))
                if j > 1 << 20 or b > 1 << 20:
                    send(conn, {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR",
                                "status": 413, "status_msg": "frame too large"})
                    return
                raw = recv_exact(conn, j)
                recv_exact(conn, b)
                try:
                    req = json.loads(raw.decode("utf-8"))
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError:
                    send(conn, {"operation": "ERROR", "direction": "RESPONSE", "type": "ERROR",
                                "status": 400, "status_msg": "bad JSON"})
                    continue
                if req.get("type") == "FILE" and req.get("operation") in self.opts.get("mute", ()):
                    continue  # the bug: no answer at all
                if req.get("operation") == "BYE":
                    send(conn, self.reply(req, 200, "bye"))
                    return
                send(conn, self.handle(req))
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()


def main(argv):
    opts, port = {}, 1379
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--port":
            port = int(argv[i + 1])
            i += 1
        elif a == "--mute":
            opts["mute"] = argv[i + 1].split(",")
            i += 1
        elif a == "--persist":
            opts["persist"] = argv[i + 1]
            i += 1
        else:
            opts[a.lstrip("-").replace("-", "_")] = True
        i += 1
    if opts.get("only_1379"):
        port = 1379
    print("STEP server starting on port %d" % port, flush=True)
    if opts.get("die"):
        open("logs/server.log", "a")  # the folder is not there: FileNotFoundError
    if opts.get("hang"):
        while True:
            time.sleep(3600)
    srv = Server(opts)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    while True:
        conn, _ = ls.accept()
        if opts.get("single"):
            srv.serve(conn)
        else:
            threading.Thread(target=srv.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
