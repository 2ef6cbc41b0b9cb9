// Command buggy is stepkit's reference server with one bug put in, for
// the fuzzer's tests: a proxy in front of an in-process reference server
// that passes every frame on unchanged except where its bug strikes.
//
//	-bug crash    FILE SAVE of a key whose upload is in progress, planned
//	              by another connection still open, kills the process
//	-bug silence  a FILE DELETE of a key this connection has deleted
//	              before is never answered, nor is anything after it
//	-bug md5      an upload whose first block to arrive is its last one
//	              and that completes on a block between its first and
//	              last stores that block with its first byte changed, so
//	              the file's MD5 is wrong
//	-bug leak     every FILE DOWNLOAD keeps 8 MiB of memory for good
//	-bug none     no bug: the reference server as it is
//
// The conformance suite passes each of them: it never re-plans a key
// from a second connection, never deletes a key twice on one connection,
// and uploads blocks in order, in reverse, or starting from block 0.
package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

type upload struct {
	conn  int
	total int64
	size  int64
	got   map[int64]bool
	first int64 // the index of the first block to arrive; -1 before
	done  bool
}

type state struct {
	bug     string
	leaked  [][]byte
	mu      sync.Mutex
	open    map[int]bool
	uploads map[string]*upload
}

func main() {
	bug := flag.String("bug", "none", "crash, silence, md5 or none")
	listen := flag.String("listen", "127.0.0.1:1379", "address to listen on")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "bug: %s\n", *bug)
	root, err := os.MkdirTemp("", "buggy-")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := refserver.New(refserver.Config{Root: root})
	if err != nil {
		log.Fatal(err)
	}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(bl)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("buggy (%s) listening on %s", *bug, l.Addr())
	s := &state{bug: *bug, open: map[int]bool{}, uploads: map[string]*upload{}}
	for id := 1; ; id++ {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go s.serve(id, c, bl.Addr().String())
	}
}

// userOf reads the user out of a course-recipe token.
func userOf(m *spec.Message) string {
	t, err := m.Token()
	if err != nil {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(t)
	if err != nil {
		return ""
	}
	u, _, _ := strings.Cut(string(b), ".")
	return u
}

func (s *state) serve(id int, c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	s.mu.Lock()
	s.open[id] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.open, id)
		s.mu.Unlock()
	}()
	answered := make(chan struct{})
	go func() {
		io.Copy(c, b)
		c.Close()
		close(answered)
	}()
	br := bufio.NewReaderSize(c, 64<<10)
	r := spec.NewReader(br, spec.Limits{})
	deleted := map[string]bool{}
	for {
		f, err := r.ReadFrame()
		var fe *spec.FrameError
		if errors.As(err, &fe) && (errors.Is(err, spec.ErrJSONTooLarge) || errors.Is(err, spec.ErrBinaryTooLarge)) {
			b.Write(spec.Header(fe.JSONLen, fe.BinaryLen))
			io.Copy(b, br)
			return
		}
		if err != nil {
			// The client is done sending: the answers still due go back
			// before the connection closes.
			if tc, ok := b.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			<-answered
			return
		}
		bin := f.Binary
		if m, err := spec.ParseMessage(f.JSON); err == nil && m.Type() == spec.TypeFile {
			var hang bool
			bin, hang = s.file(id, m, bin, deleted)
			if hang {
				io.Copy(io.Discard, c)
				return
			}
		}
		if _, err := b.Write(spec.RawFrame(f.JSON, bin)); err != nil {
			return
		}
	}
}

// file follows FILE requests and strikes where the bug is.
func (s *state) file(id int, m *spec.Message, bin []byte, deleted map[string]bool) ([]byte, bool) {
	key, err := m.Key()
	if err != nil {
		return bin, false
	}
	who := userOf(m)
	if who == "" {
		return bin, false // refused for its token: nothing happens
	}
	k := who + "/" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[k]
	switch m.Operation() {
	case spec.OpSave:
		size, err := m.Size()
		if err != nil || size < 1 || size > 1<<32 {
			return bin, false
		}
		if u != nil && !u.done && u.conn != id && s.open[u.conn] && s.bug == "crash" {
			fmt.Fprintf(os.Stderr, "panic: upload of %q re-planned from connection %d while connection %d holds it\n", key, id, u.conn)
			os.Exit(3)
		}
		if u == nil || !u.done {
			s.uploads[k] = &upload{conn: id, size: size, total: spec.TotalBlocks(size, spec.DefaultBlockSize), got: map[int64]bool{}, first: -1}
		}
	case spec.OpUpload:
		idx, err := m.BlockIndex()
		if u == nil || u.done || err != nil || idx < 0 || idx >= u.total || int64(len(bin)) != spec.BlockLen(u.size, spec.DefaultBlockSize, idx) {
			return bin, false
		}
		u.got[idx] = true
		if u.first < 0 {
			u.first = idx
		}
		if int64(len(u.got)) == u.total {
			u.done = true
			if s.bug == "md5" && u.first == u.total-1 && idx != 0 && idx != u.total-1 {
				bin = append([]byte(nil), bin...)
				bin[0] ^= 0xff
			}
		}
	case spec.OpDownload:
		if s.bug == "leak" {
			b := make([]byte, 8<<20)
			for i := range b {
				b[i] = byte(i)
			}
			s.leaked = append(s.leaked, b)
		}
	case spec.OpDelete:
		if deleted[k] && s.bug == "silence" {
			return bin, true
		}
		deleted[k] = true
		delete(s.uploads, k)
	}
	return bin, false
}
