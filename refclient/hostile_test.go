package refclient

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// scriptedServer answers LOGIN normally and every later request with
// reply(req), raw bytes written as they are (nil: no answer, close; an
// incomplete frame: written, then close).
func scriptedServer(t *testing.T, reply func(req *spec.Message) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				r := spec.NewReader(conn, spec.Limits{})
				for {
					req, err := r.ReadMessage()
					if err != nil {
						return
					}
					var out []byte
					if req.Operation() == spec.OpLogin {
						out, _ = spec.EncodeFrame(spec.NewResponse(spec.OpLogin, spec.TypeAuth, 200, "ok").Set(spec.FieldToken, "t"))
					} else {
						req.Binary = append([]byte(nil), req.Binary...)
						out = reply(req)
						if out == nil {
							return
						}
					}
					if _, err := conn.Write(out); err != nil {
						return
					}
					// A frame cut short ends the connection, as a crash would.
					if _, _, err := spec.DecodeFrame(out, spec.Limits{}); errors.Is(err, spec.ErrTruncatedBody) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func frame(m *spec.Message) []byte {
	b, err := spec.EncodeFrame(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestHostileResponses(t *testing.T) {
	okPlan := func(req *spec.Message) *spec.Message {
		return spec.NewResponse(req.Operation(), spec.TypeFile, 200, "plan").Set(spec.FieldKey, "k").
			Set(spec.FieldSize, 30000).Set(spec.FieldTotalBlock, 2).Set(spec.FieldBlockSize, 20480).Set(spec.FieldMD5, EmptyMD5)
	}
	cases := []struct {
		name  string
		op    string // "upload" or "download"
		reply func(req *spec.Message) []byte
		check func(err error) bool
	}{
		{"JSON that does not parse", "download", func(*spec.Message) []byte {
			return spec.RawFrame([]byte("{not json"), nil)
		}, func(err error) bool { return errors.Is(err, spec.ErrNotJSON) }},
		{"no status", "download", func(*spec.Message) []byte {
			return frame(spec.NewMessage().Set(spec.FieldOperation, "GET"))
		}, isProtocolError},
		{"status as a string", "download", func(*spec.Message) []byte {
			return spec.RawFrame([]byte(`{"status":"200"}`), nil)
		}, isProtocolError},
		{"plan whose total_block does not add up", "download", func(req *spec.Message) []byte {
			return frame(okPlan(req).Set(spec.FieldTotalBlock, 5))
		}, isProtocolError},
		{"plan with block_size 0", "download", func(req *spec.Message) []byte {
			return frame(okPlan(req).Set(spec.FieldBlockSize, 0))
		}, isProtocolError},
		{"plan with a negative size", "upload", func(req *spec.Message) []byte {
			return frame(okPlan(req).Set(spec.FieldSize, -1))
		}, isProtocolError},
		{"block of the wrong length", "download", func(req *spec.Message) []byte {
			if req.Operation() == spec.OpGet {
				return frame(okPlan(req))
			}
			m := spec.NewResponse(spec.OpDownload, spec.TypeFile, 200, "ok")
			m.Binary = make([]byte, 10)
			return frame(m)
		}, isProtocolError},
		{"block_index of another block", "download", func(req *spec.Message) []byte {
			if req.Operation() == spec.OpGet {
				return frame(okPlan(req))
			}
			i, _ := req.BlockIndex()
			m := spec.NewResponse(spec.OpDownload, spec.TypeFile, 200, "ok").Set(spec.FieldBlockIndex, i+1)
			m.Binary = make([]byte, spec.BlockLen(30000, 20480, i))
			return frame(m)
		}, isProtocolError},
		{"frame cut short", "upload", func(*spec.Message) []byte {
			return append(spec.Header(100, 0), `{"status":`...)
		}, func(err error) bool { return errors.Is(err, spec.ErrTruncatedBody) }},
		{"connection closed", "upload", func(*spec.Message) []byte { return nil },
			func(err error) bool { return errors.Is(err, ErrConnClosed) }},
		{"header announcing 4 GiB", "download", func(*spec.Message) []byte {
			return spec.Header(1<<32-1, 0)
		}, func(err error) bool { return errors.Is(err, spec.ErrJSONTooLarge) }},
		{"refused block", "upload", func(req *spec.Message) []byte {
			if req.Operation() == spec.OpSave {
				m := okPlan(req)
				m.Delete(spec.FieldMD5)
				return frame(m)
			}
			return frame(spec.NewResponse(spec.OpUpload, spec.TypeFile, 406, "size mismatch"))
		}, func(err error) bool { return IsStatus(err, spec.StatusBlockSize) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedServer(t, tc.reply)
			c := login(t, addr, &Options{ReplyTimeout: 2 * time.Second})
			var err error
			if tc.op == "upload" {
				_, err = c.Upload(context.Background(), "k", bytes.NewReader(make([]byte, 30000)), 30000, nil)
			} else {
				var buf bytes.Buffer
				_, err = c.Download(context.Background(), "k", &buf, nil)
			}
			if err == nil || !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error message")
			}
		})
	}
}

func isProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// A local file that shrinks while it is uploaded (its blocks are read
// from a mapping of it) fails the upload with a readable error; the
// process goes on.
func TestUploadFileThatShrinks(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, &Options{BlockSize: 4096, Window: 4})
	path := writeTemp(t, "shrinks", testData(4<<20, 11))
	var once sync.Once
	o := &TransferOptions{Progress: func(int64) {
		once.Do(func() {
			if err := os.Truncate(path, 0); err != nil {
				t.Error(err)
			}
		})
	}}
	_, err := c.UploadFile(context.Background(), path, "shrinks", o)
	if err == nil || !strings.Contains(err.Error(), "did it shrink?") {
		t.Fatalf("upload of a file cut to nothing under way: %v, want an error saying so", err)
	}
}
