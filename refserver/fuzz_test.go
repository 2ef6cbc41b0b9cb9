package refserver_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// pipeConn is a server's end of a connection made of two net.Pipes, one
// per direction, so that the client can end its requests (EOF) and still
// read the responses, as with TCP's half-close.
type pipeConn struct {
	in  net.Conn // client to server
	out net.Conn // server to client
}

func (c pipeConn) Read(p []byte) (int, error)         { return c.in.Read(p) }
func (c pipeConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c pipeConn) CloseWrite() error                  { return c.out.Close() }
func (c pipeConn) LocalAddr() net.Addr                { return c.in.LocalAddr() }
func (c pipeConn) RemoteAddr() net.Addr               { return c.in.RemoteAddr() }
func (c pipeConn) SetReadDeadline(t time.Time) error  { return c.in.SetReadDeadline(t) }
func (c pipeConn) SetWriteDeadline(t time.Time) error { return c.out.SetWriteDeadline(t) }
func (c pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(c.in.SetDeadline(t), c.out.SetDeadline(t))
}
func (c pipeConn) Close() error { return errors.Join(c.in.Close(), c.out.Close()) }

// exchange serves one connection that sends input and then ends, and
// returns every response the server sent before closing.
func exchange(t *testing.T, srv *refserver.Server, input []byte) []*spec.Message {
	t.Helper()
	cin, sin := net.Pipe()
	sout, cout := net.Pipe()
	defer cin.Close()
	defer cout.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(pipeConn{in: sin, out: sout})
	}()
	go func() {
		cin.SetWriteDeadline(time.Now().Add(20 * time.Second))
		cin.Write(input) // cut short if the server closes first
		cin.Close()
	}()
	var resps []*spec.Message
	r := spec.NewReader(cout, spec.Limits{MaxBinary: 1 << 24})
	cout.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := r.ReadMessage()
		if err != nil {
			if err != io.EOF && !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("reading responses: %v", err)
			}
			break
		}
		resps = append(resps, m.Clone())
	}
	<-done
	return resps
}

// expectedAnswers is the number of responses a server owes a client that
// sends input and ends: one per complete request, read with the server's
// own codec and limits, up to a frame over the limits (answered, then
// the connection is closed), a BYE, or the end.
func expectedAnswers(input []byte, lim spec.Limits) int {
	r := spec.NewReader(bytes.NewReader(input), lim)
	n := 0
	for {
		m, err := r.ReadMessage()
		var fe *spec.FrameError
		switch {
		case err == nil:
			n++
			if m.Has(spec.FieldOperation) && m.Has(spec.FieldType) && m.Direction() == spec.DirRequest &&
				m.Operation() == spec.OpBye && m.Type().Valid() {
				return n
			}
		case errors.As(err, &fe) && errors.Is(err, spec.ErrCharCountLength) && fe.Recovered != nil:
			n++
			m := fe.Recovered
			if m.Has(spec.FieldOperation) && m.Has(spec.FieldType) && m.Direction() == spec.DirRequest &&
				m.Operation() == spec.OpBye && m.Type().Valid() {
				return n
			}
		case errors.As(err, &fe) && fe.Resumable():
			n++
		case errors.Is(err, spec.ErrJSONTooLarge) || errors.Is(err, spec.ErrBinaryTooLarge):
			return n + 1
		default:
			return n
		}
	}
}

// FuzzConn feeds arbitrary byte streams to a server connection, seeded with
// the golden frames alone and as one session. The server must not panic,
// must answer every complete request exactly once, must create nothing
// outside its root, and must serve the next connection.
func FuzzConn(f *testing.F) {
	var session []byte
	seeds := 0
	login, _ := spec.EncodeFrame(spec.NewRequest(spec.OpLogin, spec.TypeAuth).
		Set("username", "fuzz").Set("password", md5hex([]byte("fuzz"))))
	session = append(session, login...)
	err := filepath.WalkDir("../fixtures/frames", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".bin") || strings.Contains(path, ".stepkit.") ||
			strings.Contains(path, ".reference.") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data)
		f.Add(append(append([]byte(nil), login...), data...))
		seeds += 2
		if len(data) < 1024 && len(session) < 16<<10 {
			session = append(session, data...)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(session)

	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	// Small limits, so that the fuzzer reaches them; short timeouts, so
	// that a stream the server waits on ends soon.
	lim := spec.Limits{MaxJSON: 4096, MaxBinary: 1 << 16}
	srv, err := refserver.New(refserver.Config{Root: root, Limits: lim, MaxFileSize: 1 << 20, BlockSize: 1024,
		ReadTimeout: 5 * time.Second, MaxConns: 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	lim = srv.Config().Limits
	seeds++ // the session
	f.Cleanup(func() {
		if !f.Failed() && !testing.Short() && seeds > 0 && os.Getenv(reliability.EnvVar) != "" {
			reliability.Record(f, reliability.Row{Area: "server", Times: seeds,
				Input:   "byte streams to a connection through net.Pipe: each golden request frame, alone and after a LOGIN, and all as one session (the fuzzer's seeds; CI fuzzes 30 s more)",
				Outcome: "no panic; every complete request answered exactly once; nothing created outside the root; the next connection served",
				Lost:    "nothing"})
		}
	})
	var mu sync.Mutex // one connection at a time: the fuzzer's workers share the server
	f.Fuzz(func(t *testing.T, input []byte) {
		mu.Lock()
		defer mu.Unlock()
		want := expectedAnswers(input, lim)
		resps := exchange(t, srv, input)
		if len(resps) != want {
			t.Fatalf("%d responses to %d requests", len(resps), want)
		}
		for i, m := range resps {
			if m.Direction() != spec.DirResponse {
				t.Fatalf("response %d: %s", i, m.JSONString())
			}
			if _, ok := m.Status(); !ok {
				t.Fatalf("response %d without a status: %s", i, m.JSONString())
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "root" {
				t.Fatalf("created outside the root: %s", e.Name())
			}
		}
		next := exchange(t, srv, login)
		if len(next) != 1 {
			t.Fatalf("next connection: %d responses to a LOGIN", len(next))
		}
		if st, _ := next[0].Status(); st != 200 {
			t.Fatalf("next connection: %s", next[0].JSONString())
		}
	})
}
