package refserver_test

import (
	"crypto/md5"
	"encoding/hex"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepkit/stepkit/spec"
	"golang.org/x/crypto/bcrypt"
)

// client is a minimal STEP client for tests, written on the spec codec.
type client struct {
	tb    testing.TB
	nc    net.Conn
	r     *spec.Reader
	w     *spec.Writer
	token string
}

func dial(tb testing.TB, addr string) *client {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { nc.Close() })
	return &client{tb: tb, nc: nc, r: spec.NewReader(nc, spec.Limits{MaxBinary: 1 << 24}), w: spec.NewWriter(nc)}
}

func (c *client) send(m *spec.Message) {
	c.tb.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.w.WriteMessage(m); err != nil {
		c.tb.Fatalf("send: %v", err)
	}
}

func (c *client) sendRaw(b []byte) {
	c.tb.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.tb.Fatalf("send raw: %v", err)
	}
}

// recv reads one response; its Binary is copied.
func (c *client) recv() *spec.Message {
	c.tb.Helper()
	m, err := c.recvErr()
	if err != nil {
		c.tb.Fatalf("receive: %v", err)
	}
	return m
}

func (c *client) recvErr() (*spec.Message, error) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.r.ReadMessage()
	if err != nil {
		return nil, err
	}
	return m.Clone(), nil
}

func (c *client) do(m *spec.Message) *spec.Message {
	c.tb.Helper()
	c.send(m)
	return c.recv()
}

// login logs in as user under the course rule and keeps the token.
func (c *client) login(user string) string {
	c.tb.Helper()
	resp := c.do(req(spec.OpLogin, spec.TypeAuth, "username", user, "password", md5hex([]byte(user))))
	wantStatus(c.tb, resp, 200)
	tok, err := resp.Token()
	if err != nil || tok == "" {
		c.tb.Fatalf("login: no token in %s", resp.JSONString())
	}
	c.token = tok
	return tok
}

// req builds a request; kv are field name, value pairs.
func req(op spec.Operation, t spec.Type, kv ...any) *spec.Message {
	m := spec.NewRequest(op, t)
	for i := 0; i+1 < len(kv); i += 2 {
		m.Set(kv[i].(string), kv[i+1])
	}
	return m
}

// authed is req with the client's token.
func (c *client) authed(op spec.Operation, t spec.Type, kv ...any) *spec.Message {
	return req(op, t, append([]any{"token", c.token}, kv...)...)
}

func wantStatus(tb testing.TB, m *spec.Message, want int) {
	tb.Helper()
	st, ok := m.Status()
	if !ok || int(st) != want {
		tb.Fatalf("status = %d (ok %v), want %d: %s", st, ok, want, m.JSONString())
	}
	if m.Direction() != spec.DirResponse {
		tb.Fatalf("direction = %q, want RESPONSE: %s", m.Direction(), m.JSONString())
	}
	if !m.Has(spec.FieldStatusMsg) || !m.Has(spec.FieldOperation) || !m.Has(spec.FieldType) {
		tb.Fatalf("response lacks a compulsory field: %s", m.JSONString())
	}
}

func wantOpType(tb testing.TB, m *spec.Message, op spec.Operation, t spec.Type) {
	tb.Helper()
	if m.Operation() != op || m.Type() != t {
		tb.Fatalf("operation/type = %s/%s, want %s/%s: %s", m.Operation(), m.Type(), op, t, m.JSONString())
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed + byte(i>>11)
	}
	return b
}

// upload plans and uploads data under key, in order, and returns the MD5
// the server reported.
func (c *client) upload(key string, data []byte) string {
	c.tb.Helper()
	plan := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", key, "size", len(data)))
	wantStatus(c.tb, plan, 200)
	bs, _ := plan.BlockSize()
	total, _ := plan.TotalBlock()
	var sum string
	for i := int64(0); i < total; i++ {
		end := min((i+1)*bs, int64(len(data)))
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", key, "block_index", i)
		m.Binary = data[i*bs : end]
		resp := c.do(m)
		wantStatus(c.tb, resp, 200)
		if i == total-1 {
			sum, _ = resp.MD5()
		}
	}
	return sum
}

// download fetches key whole.
func (c *client) download(key string) []byte {
	c.tb.Helper()
	plan := c.do(c.authed(spec.OpGet, spec.TypeFile, "key", key))
	wantStatus(c.tb, plan, 200)
	size, _ := plan.Size()
	total, _ := plan.TotalBlock()
	out := make([]byte, 0, size)
	for i := int64(0); i < total; i++ {
		resp := c.do(c.authed(spec.OpDownload, spec.TypeFile, "key", key, "block_index", i))
		wantStatus(c.tb, resp, 200)
		out = append(out, resp.Binary...)
	}
	if sum, _ := plan.MD5(); sum != md5hex(out) {
		c.tb.Fatalf("download %q: md5 %s, plan says %s", key, md5hex(out), sum)
	}
	return out
}

// atomicTime is a clock tests can move.
type atomicTime struct{ v atomic.Int64 }

func (a *atomicTime) Store(t time.Time) { a.v.Store(t.UnixNano()) }
func (a *atomicTime) Load() time.Time   { return time.Unix(0, a.v.Load()) }

// cheapHash is a bcrypt hash of the lowest cost, to keep tests fast.
func cheapHash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	return string(h), err
}
