package refserver

import (
	"io"
	"net"
	"testing"

	"github.com/stepkit/stepkit/spec"
)

// Storing an UPLOAD block and answering it allocates nothing: the request
// is read into a reused message, the token and key are compared as sent,
// the upload is found without building a map key, and the answer is a
// reused message encoded into the connection's buffer.
func TestUploadBlockAllocatesNothing(t *testing.T) {
	srv, err := New(Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go io.Copy(io.Discard, peer) // the answers
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := srv.newConn(nc, 1)

	login := c.login(spec.NewRequest(spec.OpLogin, spec.TypeAuth).Set(spec.FieldUsername, "a").
		Set(spec.FieldPassword, "0cc175b9c0f1b6a831c399e269772661"))
	token, err := login.Token()
	if err != nil {
		t.Fatalf("login: %s", login.JSONString())
	}
	const blocks, bs = 100000, 64
	save := spec.NewRequest(spec.OpSave, spec.TypeFile).Set(spec.FieldToken, token).
		Set(spec.FieldKey, "k").Set(spec.FieldSize, blocks*bs).Set(spec.FieldBlockSize, bs)
	if resp, _ := c.handle(save); !ok(resp) {
		t.Fatalf("save: %s", resp.JSONString())
	}
	// The frames of the blocks, as a client sends them.
	frames := make([][]byte, 0, 300)
	block := make([]byte, bs)
	for i := 0; i < cap(frames); i++ {
		m := spec.NewRequest(spec.OpUpload, spec.TypeFile).Set(spec.FieldToken, token).
			Set(spec.FieldKey, "k").Set(spec.FieldBlockIndex, i)
		m.Binary = block
		f, _ := spec.EncodeFrame(m)
		frames = append(frames, f)
	}
	var src frameSource
	c.r = spec.NewReader(&src, srv.cfg.Limits)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		src.next = frames[i]
		i++
		req, err := c.r.ReadMessageInto(c.req)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := c.handle(req)
		if !ok(resp) {
			t.Fatalf("upload: %s", resp.JSONString())
		}
		if !c.send(resp, false) {
			t.Fatal("send failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per block", allocs)
	}
}

func ok(m *spec.Message) bool {
	st, _ := m.Status()
	return st == spec.StatusOK
}

// frameSource hands out one frame per read, as a socket would.
type frameSource struct{ next []byte }

func (s *frameSource) Read(p []byte) (int, error) {
	if len(s.next) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.next)
	s.next = s.next[n:]
	return n, nil
}
