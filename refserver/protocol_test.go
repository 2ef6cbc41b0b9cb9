package refserver_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// row is one request of STEP-REFERENCE.md's tables with the answer of
// DECISIONS.md: its status, operation and type.
type row struct {
	name   string
	req    func(c *client) *spec.Message
	status int
	op     spec.Operation
	typ    spec.Type
	check  func(t *testing.T, c *client, resp *spec.Message)
}

func runRows(t *testing.T, c *client, rows []row) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c.tb = t
			resp := c.do(r.req(c))
			wantStatus(t, resp, r.status)
			wantOpType(t, resp, r.op, r.typ)
			if r.check != nil {
				r.check(t, c, resp)
			}
		})
	}
}

// §3: request checks, in the reference's order.
func TestRequestChecks(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("checks")
	raw := func(fields ...any) func(*client) *spec.Message {
		return func(*client) *spec.Message {
			m := spec.NewMessage()
			for i := 0; i+1 < len(fields); i += 2 {
				m.Set(fields[i].(string), fields[i+1])
			}
			return m
		}
	}
	msgIs := func(want string) func(*testing.T, *client, *spec.Message) {
		return func(t *testing.T, _ *client, m *spec.Message) {
			if m.StatusMsg() != want {
				t.Fatalf("status_msg %q, want %q", m.StatusMsg(), want)
			}
		}
	}
	runRows(t, c, []row{
		{"earth", raw("direction", "EARTH"), 333, spec.Op3Body, spec.TypeDangerous, msgIs("DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!")},
		{"earth before anything", raw("direction", "EARTH", "operation", "NOPE"), 333, spec.Op3Body, spec.TypeDangerous, nil},
		{"missing operation", raw("direction", "REQUEST", "type", "DATA"), 400, spec.OpError, spec.TypeError, msgIs("Compulsory field operation is missing.")},
		{"missing direction", raw("operation", "GET", "type", "DATA"), 400, spec.OpError, spec.TypeError, msgIs("Compulsory field direction is missing.")},
		{"missing type", raw("operation", "GET", "direction", "REQUEST"), 400, spec.OpError, spec.TypeError, msgIs("Compulsory field type is missing.")},
		{"empty object", raw(), 400, spec.OpError, spec.TypeError, nil},
		{"direction RESPONSE", raw("operation", "GET", "direction", "RESPONSE", "type", "DATA"), 407, spec.OpError, spec.TypeError, nil},
		{"direction not a string", raw("operation", "GET", "direction", 1, "type", "DATA"), 407, spec.OpError, spec.TypeError, nil},
		{"direction before operation", raw("operation", "NOPE", "direction", "X", "type", "NOPE"), 407, spec.OpError, spec.TypeError, nil},
		{"unknown operation", raw("operation", "PUT", "direction", "REQUEST", "type", "DATA"), 408, spec.OpError, spec.TypeError, nil},
		{"operation ERROR", raw("operation", "ERROR", "direction", "REQUEST", "type", "DATA"), 408, spec.OpError, spec.TypeError, nil},
		{"operation not a string", raw("operation", 5, "direction", "REQUEST", "type", "DATA"), 408, spec.OpError, spec.TypeError, nil},
		{"lower-case operation", raw("operation", "get", "direction", "REQUEST", "type", "DATA"), 408, spec.OpError, spec.TypeError, nil},
		{"operation before type", raw("operation", "NOPE", "direction", "REQUEST", "type", "NOPE"), 408, spec.OpError, spec.TypeError, nil},
		{"unknown type", raw("operation", "GET", "direction", "REQUEST", "type", "BLOB"), 409, spec.OpError, spec.TypeError, nil},
		{"type not a string", raw("operation", "GET", "direction", "REQUEST", "type", []int{1}), 409, spec.OpError, spec.TypeError, nil},
		{"login type DATA", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeData, "username", "a", "password", md5hex([]byte("a")))
		}, 409, spec.OpLogin, spec.TypeAuth, nil},
		{"login no username", func(*client) *spec.Message { return req(spec.OpLogin, spec.TypeAuth, "password", "x") }, 410, spec.OpLogin, spec.TypeAuth, nil},
		{"login no password", func(*client) *spec.Message { return req(spec.OpLogin, spec.TypeAuth, "username", "x") }, 410, spec.OpLogin, spec.TypeAuth, nil},
		{"login username not a string", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", 12, "password", md5hex([]byte("12")))
		}, 410, spec.OpLogin, spec.TypeAuth, nil},
		{"login password not a string", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", "x", "password", 5)
		}, 410, spec.OpLogin, spec.TypeAuth, nil},
		{"login empty username", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", "", "password", md5hex(nil))
		}, 410, spec.OpLogin, spec.TypeAuth, nil},
		{"login wrong password", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", "x", "password", md5hex([]byte("y")))
		}, 401, spec.OpLogin, spec.TypeAuth, func(t *testing.T, _ *client, m *spec.Message) {
			if m.Has("token") {
				t.Fatal("401 carries a token")
			}
		}},
		{"login upper-case password", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", "x", "password", "9DD4E461268C8034F5C8564E155C67A6")
		}, 200, spec.OpLogin, spec.TypeAuth, nil},
		{"login non-ASCII username", func(*client) *spec.Message {
			return req(spec.OpLogin, spec.TypeAuth, "username", "学生", "password", md5hex([]byte("学生")))
		}, 200, spec.OpLogin, spec.TypeAuth, nil},
		{"no token", func(*client) *spec.Message { return req(spec.OpSave, spec.TypeData, "key", "k") }, 403, spec.OpSave, spec.TypeAuth, nil},
		{"token not base64", func(*client) *spec.Message {
			return req(spec.OpGet, spec.TypeData, "token", "%%%not base64%%%", "key", "k")
		}, 403, spec.OpGet, spec.TypeAuth, nil},
		{"token not a string", func(*client) *spec.Message { return req(spec.OpGet, spec.TypeData, "token", 42, "key", "k") }, 403, spec.OpGet, spec.TypeAuth, nil},
		{"token of three parts", func(*client) *spec.Message {
			return req(spec.OpGet, spec.TypeFile, "token", "YS5iLmM=", "key", "k") // a.b.c
		}, 403, spec.OpGet, spec.TypeAuth, nil},
		{"auth with SAVE", func(c *client) *spec.Message { return c.authed(spec.OpSave, spec.TypeAuth, "key", "k") }, 409, spec.OpSave, spec.TypeAuth, nil},
		{"auth with GET before token", func(*client) *spec.Message { return req(spec.OpGet, spec.TypeAuth) }, 409, spec.OpGet, spec.TypeAuth, nil},
		{"data upload", func(c *client) *spec.Message { return c.authed(spec.OpUpload, spec.TypeData, "key", "k") }, 408, spec.OpUpload, spec.TypeData, nil},
		{"data download", func(c *client) *spec.Message { return c.authed(spec.OpDownload, spec.TypeData, "key", "k") }, 408, spec.OpDownload, spec.TypeData, nil},
		{"still usable", func(c *client) *spec.Message { return c.authed(spec.OpGet, spec.TypeData, "key", "none") }, 404, spec.OpGet, spec.TypeData, nil},
	})
}

// §5: DATA operations.
func TestDataOperations(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("2362202")
	keyIs := func(want string) func(*testing.T, *client, *spec.Message) {
		return func(t *testing.T, _ *client, m *spec.Message) {
			if k, _ := m.Key(); k != want {
				t.Fatalf("key %q, want %q", k, want)
			}
		}
	}
	runRows(t, c, []row{
		{"GET without key", func(c *client) *spec.Message { return c.authed(spec.OpGet, spec.TypeData) }, 410, spec.OpGet, spec.TypeData, nil},
		{"GET unknown key", func(c *client) *spec.Message { return c.authed(spec.OpGet, spec.TypeData, "key", "nope") }, 404, spec.OpGet, spec.TypeData, nil},
		{"SAVE new key", func(c *client) *spec.Message {
			return c.authed(spec.OpSave, spec.TypeData, "key", "doc", "note", "hello", "n", 3, "nested", map[string]any{"a": []int{1, 2}}, "名字", "值")
		}, 200, spec.OpSave, spec.TypeData, keyIs("doc")},
		{"SAVE existing key", func(c *client) *spec.Message {
			return c.authed(spec.OpSave, spec.TypeData, "key", "doc", "note", "overwrite?")
		}, 402, spec.OpSave, spec.TypeData, nil},
		{"GET known key", func(c *client) *spec.Message { return c.authed(spec.OpGet, spec.TypeData, "key", "doc") }, 200, spec.OpGet, spec.TypeData,
			func(t *testing.T, _ *client, m *spec.Message) {
				for f, want := range map[string]string{"note": `"hello"`, "n": "3", "nested": `{"a":[1,2]}`, "名字": `"值"`, "key": `"doc"`, "direction": `"RESPONSE"`} {
					if raw, _ := m.Raw(f); string(raw) != want {
						t.Errorf("field %s = %s, want %s", f, raw, want)
					}
				}
				if m.Has("token") {
					t.Error("the stored document kept the token")
				}
			}},
		{"SAVE without key", func(c *client) *spec.Message { return c.authed(spec.OpSave, spec.TypeData, "x", 1) }, 200, spec.OpSave, spec.TypeData,
			func(t *testing.T, c *client, m *spec.Message) {
				k, _ := m.Key()
				u, err := uuid.Parse(k)
				if err != nil || u.Version() != 4 || u.String() != k {
					t.Fatalf("generated key %q is not a canonical UUID4", k)
				}
				wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", k)), 200)
			}},
		{"SAVE key not a string", func(c *client) *spec.Message { return c.authed(spec.OpSave, spec.TypeData, "key", 7) }, 410, spec.OpSave, spec.TypeData, nil},
		{"DELETE without key", func(c *client) *spec.Message { return c.authed(spec.OpDelete, spec.TypeData) }, 410, spec.OpDelete, spec.TypeData, nil},
		{"DELETE unknown key", func(c *client) *spec.Message { return c.authed(spec.OpDelete, spec.TypeData, "key", "nope") }, 404, spec.OpDelete, spec.TypeData, nil},
		{"DELETE known key", func(c *client) *spec.Message { return c.authed(spec.OpDelete, spec.TypeData, "key", "doc") }, 200, spec.OpDelete, spec.TypeData, keyIs("doc")},
		{"GET deleted key", func(c *client) *spec.Message { return c.authed(spec.OpGet, spec.TypeData, "key", "doc") }, 404, spec.OpGet, spec.TypeData, nil},
		{"SAVE deleted key again", func(c *client) *spec.Message { return c.authed(spec.OpSave, spec.TypeData, "key", "doc") }, 200, spec.OpSave, spec.TypeData, nil},
		{"UPLOAD", func(c *client) *spec.Message { return c.authed(spec.OpUpload, spec.TypeData, "key", "doc") }, 408, spec.OpUpload, spec.TypeData, nil},
		{"DOWNLOAD", func(c *client) *spec.Message { return c.authed(spec.OpDownload, spec.TypeData, "key", "doc") }, 408, spec.OpDownload, spec.TypeData, nil},
	})
}

// §6: FILE operations.
func TestPlanBlockLimit(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: 1})
	c := dial(t, addr)
	c.login("tiny")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 1<<24+1)), 413)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 1000)), 200)
}

func TestFileOperations(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("2362202")
	const bs = spec.DefaultBlockSize
	data := pattern(2*bs+100, 1) // three blocks, the last of 100 bytes
	block := func(i int) []byte { return data[i*bs : min((i+1)*bs, len(data))] }
	up := func(key string, idx any, bin []byte) func(*client) *spec.Message {
		return func(c *client) *spec.Message {
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", key)
			if idx != nil {
				m.Set("block_index", idx)
			}
			m.Binary = bin
			return m
		}
	}
	f := func(op spec.Operation, kv ...any) func(*client) *spec.Message {
		return func(c *client) *spec.Message { return c.authed(op, spec.TypeFile, kv...) }
	}
	runRows(t, c, []row{
		{"SAVE without size", f(spec.OpSave, "key", "a"), 410, spec.OpSave, spec.TypeFile, nil},
		{"SAVE size string", f(spec.OpSave, "key", "a", "size", "10"), 410, spec.OpSave, spec.TypeFile, nil},
		{"SAVE size negative", f(spec.OpSave, "key", "a", "size", -1), 410, spec.OpSave, spec.TypeFile, nil},
		{"SAVE size float", f(spec.OpSave, "key", "a", "size", 1.5), 410, spec.OpSave, spec.TypeFile, nil},
		{"SAVE size too large", f(spec.OpSave, "key", "a", "size", int64(1)<<33), 413, spec.OpSave, spec.TypeFile, nil},
		{"SAVE key not a string", f(spec.OpSave, "key", 5, "size", 10), 410, spec.OpSave, spec.TypeFile, nil},
		{"SAVE ok", f(spec.OpSave, "key", "a", "size", len(data)), 200, spec.OpSave, spec.TypeFile,
			func(t *testing.T, _ *client, m *spec.Message) {
				if m.StatusMsg() != "This is the upload plan." {
					t.Errorf("status_msg %q", m.StatusMsg())
				}
				k, _ := m.Key()
				size, _ := m.Size()
				tb, _ := m.TotalBlock()
				b, _ := m.BlockSize()
				if k != "a" || size != int64(len(data)) || tb != 3 || b != bs {
					t.Errorf("plan %s", m.JSONString())
				}
			}},
		{"SAVE without key", f(spec.OpSave, "size", 5), 200, spec.OpSave, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			k, _ := m.Key()
			if u, err := uuid.Parse(k); err != nil || u.Version() != 4 {
				t.Errorf("generated key %q", k)
			}
		}},
		{"GET in progress", f(spec.OpGet, "key", "a"), 404, spec.OpGet, spec.TypeFile, nil},
		{"DOWNLOAD in progress", f(spec.OpDownload, "key", "a", "block_index", 0), 404, spec.OpDownload, spec.TypeFile, nil},
		{"UPLOAD without key", up("", nil, nil), 410, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD no plan", up("nokey", 0, block(0)), 408, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD without block_index", up("a", nil, block(0)), 410, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD block_index string", up("a", "0", block(0)), 410, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD block_index float", up("a", 0.5, block(0)), 410, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD index too big", up("a", 3, block(0)), 405, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD index negative", up("a", -1, block(0)), 410, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD short block", up("a", 0, block(0)[:100]), 406, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD long last block", up("a", 2, block(1)), 406, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD block 2 first", up("a", 2, block(2)), 200, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD block 0", up("a", 0, block(0)), 200, spec.OpUpload, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			if m.Has("md5") {
				t.Error("md5 before the last block")
			}
			if i, _ := m.BlockIndex(); i != 0 {
				t.Errorf("block_index %d", i)
			}
		}},
		{"UPLOAD block 0 again", up("a", 0, block(0)), 200, spec.OpUpload, spec.TypeFile, nil},
		{"UPLOAD completing", up("a", 1, block(1)), 200, spec.OpUpload, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			if s, _ := m.MD5(); s != md5hex(data) {
				t.Errorf("md5 %q, want %q", s, md5hex(data))
			}
		}},
		{"UPLOAD completed key", up("a", 0, block(0)), 408, spec.OpUpload, spec.TypeFile, nil},
		{"SAVE completed key", f(spec.OpSave, "key", "a", "size", 3), 402, spec.OpSave, spec.TypeFile, nil},
		{"SAVE completed key without size", f(spec.OpSave, "key", "a"), 402, spec.OpSave, spec.TypeFile, nil},
		{"GET without key", f(spec.OpGet), 410, spec.OpGet, spec.TypeFile, nil},
		{"GET unknown", f(spec.OpGet, "key", "zz"), 404, spec.OpGet, spec.TypeFile, nil},
		{"GET ok", f(spec.OpGet, "key", "a"), 200, spec.OpGet, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			size, _ := m.Size()
			tb, _ := m.TotalBlock()
			b, _ := m.BlockSize()
			s, _ := m.MD5()
			if size != int64(len(data)) || tb != 3 || b != bs || s != md5hex(data) {
				t.Errorf("download plan %s", m.JSONString())
			}
		}},
		{"DOWNLOAD without key", f(spec.OpDownload, "block_index", 0), 410, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD unknown", f(spec.OpDownload, "key", "zz", "block_index", 0), 404, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD without block_index", f(spec.OpDownload, "key", "a"), 410, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD block_index string", f(spec.OpDownload, "key", "a", "block_index", "1"), 410, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD index too big", f(spec.OpDownload, "key", "a", "block_index", 3), 405, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD index negative", f(spec.OpDownload, "key", "a", "block_index", -1), 410, spec.OpDownload, spec.TypeFile, nil},
		{"DOWNLOAD last block", f(spec.OpDownload, "key", "a", "block_index", 2), 200, spec.OpDownload, spec.TypeFile,
			func(t *testing.T, _ *client, m *spec.Message) {
				n, _ := m.Size()
				if string(m.Binary) != string(block(2)) || n != 100 {
					t.Errorf("block 2: size %d, %d bytes", n, len(m.Binary))
				}
			}},
		{"DELETE without key", f(spec.OpDelete), 410, spec.OpDelete, spec.TypeFile, nil},
		{"DELETE unknown", f(spec.OpDelete, "key", "zz"), 404, spec.OpDelete, spec.TypeFile, nil},
		{"DELETE ok", f(spec.OpDelete, "key", "a"), 200, spec.OpDelete, spec.TypeFile, nil},
		{"GET deleted", f(spec.OpGet, "key", "a"), 404, spec.OpGet, spec.TypeFile, nil},
		{"SAVE in progress", f(spec.OpSave, "key", "p", "size", len(data)), 200, spec.OpSave, spec.TypeFile, nil},
		{"UPLOAD p block 0", up("p", 0, block(0)), 200, spec.OpUpload, spec.TypeFile, nil},
		{"SAVE again restarts", f(spec.OpSave, "key", "p", "size", 10), 200, spec.OpSave, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			if tb, _ := m.TotalBlock(); tb != 1 {
				t.Errorf("restarted plan %s", m.JSONString())
			}
		}},
		{"UPLOAD old plan's block refused", up("p", 0, block(0)), 406, spec.OpUpload, spec.TypeFile, nil},
		{"DELETE in progress", f(spec.OpDelete, "key", "p"), 404, spec.OpDelete, spec.TypeFile, nil},
		{"UPLOAD after delete", up("p", 0, make([]byte, 10)), 408, spec.OpUpload, spec.TypeFile, nil},
		{"SAVE size 0", f(spec.OpSave, "key", "empty", "size", 0), 200, spec.OpSave, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			tb, _ := m.TotalBlock()
			s, _ := m.MD5()
			if tb != 0 || s != "d41d8cd98f00b204e9800998ecf8427e" {
				t.Errorf("empty plan %s", m.JSONString())
			}
		}},
		{"GET empty", f(spec.OpGet, "key", "empty"), 200, spec.OpGet, spec.TypeFile, func(t *testing.T, _ *client, m *spec.Message) {
			if size, _ := m.Size(); size != 0 {
				t.Errorf("size %d", size)
			}
		}},
		{"DOWNLOAD empty", f(spec.OpDownload, "key", "empty", "block_index", 0), 405, spec.OpDownload, spec.TypeFile, nil},
		{"SAVE empty again", f(spec.OpSave, "key", "empty", "size", 0), 402, spec.OpSave, spec.TypeFile, nil},
		{"BYE", f(spec.OpBye), 200, spec.OpBye, spec.TypeFile, func(t *testing.T, c *client, _ *spec.Message) {
			if _, err := c.recvErr(); err == nil {
				t.Fatal("connection still open after BYE")
			}
		}},
	})
}

// BYE of any type, with or without a token, is answered and the
// connection closed.
func TestBye(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	for _, typ := range []spec.Type{spec.TypeData, spec.TypeFile, spec.TypeAuth} {
		c := dial(t, addr)
		r := c.do(req(spec.OpBye, typ))
		wantStatus(t, r, 200)
		wantOpType(t, r, spec.OpBye, typ)
		closed(t, c)
	}
	// Requests pipelined after a BYE are not served.
	c := dial(t, addr)
	c.send(req(spec.OpBye, spec.TypeData))
	c.send(req(spec.OpGet, spec.TypeData, "direction", "EARTH"))
	wantStatus(t, c.recv(), 200)
	closed(t, c)
	usable(t, dial(t, addr))
}
