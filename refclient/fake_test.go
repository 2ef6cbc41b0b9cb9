package refclient

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// fakeServer is a small STEP server for the client's tests. Each connection
// is served strictly one request at a time: it reads a frame, answers it,
// and only then reads the next, as the course's Python server does. Its
// quirks are switched on per test.
type fakeServer struct {
	t  *testing.T
	ln net.Listener

	blockSize      int64
	corruptBlock   int64 // DOWNLOAD of this block flips a byte (-1: none)
	corruptUpload  int64 // UPLOAD of this block is stored with a byte flipped (-1: none)
	noMD5          bool  // never send md5 (UPLOAD completion, GET plan)
	noUploadMD5    bool  // no md5 in the UPLOAD completion (GET still has it)
	delay          time.Duration
	deleteAsGET    bool  // answer FILE DELETE with operation GET, like the course server
	silentEmpty    bool  // no answer to FILE SAVE with size 0, like the course server
	readAhead      int   // requests read while the next one was already waiting (pipelining evidence)
	cutAfterBlocks int   // close the connection after this many UPLOAD/DOWNLOAD blocks (0: never)
	charCount      bool  // JSON length counts characters, the course server's framing bug
	overRead       int   // read frames as the course server does, each read returning at most this many bytes (0: exact reads)
	advertise      bool  // advertise pipelining at login (EXT-6), truthfully or not
	refuseBlock    int64 // UPLOAD of this block is refused with 408 (-1: none)
	silentRefusal  bool  // after refusing refuseBlock, answer nothing more on that connection
	stallBlock     int64 // UPLOAD of this block is answered stallFor late, on its connection only
	stallFor       time.Duration

	mu       sync.Mutex
	files    map[string]*fakeFile
	data     map[string]*spec.Message
	saves    int // FILE SAVE requests seen
	uploads  int // UPLOAD blocks accepted
	requests []spec.Operation
	conns    int
	// Of UPLOAD blocks: which were answered, how many from block 0 on
	// all were, and how far ahead of those a block ever came.
	upAnswered map[int64]bool
	upPrefix   int64
	maxSpread  int64
	blocksOn   map[int][]int64 // UPLOAD and DOWNLOAD block indexes, by connection
}

type fakeFile struct {
	size   int64
	data   []byte
	got    []bool
	done   bool
	digest string
}

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, blockSize: spec.DefaultBlockSize, corruptBlock: -1, corruptUpload: -1, refuseBlock: -1,
		files: map[string]*fakeFile{}, data: map[string]*spec.Message{}}
	t.Cleanup(func() { ln.Close() })
	return s
}

// start begins accepting; configure the quirks before.
func (s *fakeServer) start() string {
	var wg sync.WaitGroup
	s.t.Cleanup(wg.Wait)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			id := s.conns
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(conn, id)
			}()
		}
	}()
	s.t.Cleanup(func() { s.ln.Close() })
	return s.ln.Addr().String()
}

func (s *fakeServer) serve(conn net.Conn, id int) {
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-stop:
		case <-time.After(20 * time.Second):
			conn.Close()
		}
	}()
	r := spec.NewReader(conn, spec.Limits{})
	w := spec.NewWriter(conn)
	blocks := 0
	silent := false
	for {
		var req *spec.Message
		var err error
		if s.overRead > 0 {
			req, err = referenceFrame(conn, s.overRead)
		} else {
			req, err = r.ReadMessage()
		}
		if err != nil {
			return
		}
		// Pipelining evidence: the next request is already waiting.
		if r.Buffered() > 0 {
			s.mu.Lock()
			s.readAhead++
			s.mu.Unlock()
		}
		if s.delay > 0 {
			time.Sleep(s.delay)
		}
		op := req.Operation()
		upIndex, upErr := req.BlockIndex()
		if (op == spec.OpUpload || op == spec.OpDownload) && upErr == nil {
			s.mu.Lock()
			if s.blocksOn == nil {
				s.blocksOn = map[int][]int64{}
			}
			s.blocksOn[id] = append(s.blocksOn[id], upIndex)
			s.mu.Unlock()
		}
		if op == spec.OpUpload && upErr == nil {
			s.mu.Lock()
			s.maxSpread = max(s.maxSpread, upIndex-s.upPrefix)
			s.mu.Unlock()
			if s.stallFor > 0 && upIndex == s.stallBlock {
				time.Sleep(s.stallFor)
			}
		}
		if op == spec.OpUpload || op == spec.OpDownload {
			blocks++
			if s.cutAfterBlocks > 0 && blocks > s.cutAfterBlocks {
				return
			}
		}
		if silent {
			continue
		}
		var resp *spec.Message
		if i, _ := req.BlockIndex(); op == spec.OpUpload && s.refuseBlock >= 0 && i == s.refuseBlock {
			resp = spec.NewResponse(op, req.Type(), spec.StatusWrongOperation, "refused")
			silent = s.silentRefusal
			if silent {
				// Refuse only once the next request has come, so that an
				// answer is due when the client reads the refusal: how
				// many are due otherwise depends on scheduling.
				if _, err := r.ReadMessage(); err != nil {
					return
				}
			}
		} else {
			resp = s.answer(req)
		}
		if resp == nil {
			continue
		}
		if op == spec.OpUpload && upErr == nil {
			// Marked before the answer leaves: the client may send
			// the next block as soon as it arrives.
			s.mu.Lock()
			if s.upAnswered == nil {
				s.upAnswered = map[int64]bool{}
			}
			s.upAnswered[upIndex] = true
			for s.upAnswered[s.upPrefix] {
				s.upPrefix++
			}
			s.mu.Unlock()
		}
		if s.charCount {
			js := resp.AppendJSON(nil)
			frame := append(spec.Header(uint32(utf8.RuneCount(js)), uint32(len(resp.Binary))), js...)
			if _, err := conn.Write(append(frame, resp.Binary...)); err != nil {
				return
			}
		} else if err := w.WriteMessage(resp); err != nil {
			return
		}
		if op == spec.OpBye {
			return
		}
	}
}

func (s *fakeServer) answer(req *spec.Message) *spec.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, typ := req.Operation(), req.Type()
	s.requests = append(s.requests, op)
	ok := func() *spec.Message { return spec.NewResponse(op, typ, spec.StatusOK, "OK") }
	fail := func(st spec.Status) *spec.Message { return spec.NewResponse(op, typ, st, st.Text()) }
	if op == spec.OpLogin {
		u, _ := req.Username()
		p, _ := req.Password()
		if p != CoursePassword(u) {
			return fail(spec.StatusPasswordError)
		}
		resp := ok().Set(spec.FieldToken, "tok-"+u)
		if s.advertise {
			resp.Set(FieldPipelining, true)
		}
		return resp
	}
	if op == spec.OpBye {
		return nil // the course server never answers BYE
	}
	if _, err := req.Token(); err != nil {
		return fail(spec.StatusTokenError)
	}
	key, kerr := req.Key()
	if typ == spec.TypeData {
		switch op {
		case spec.OpSave:
			if _, dup := s.data[key]; dup {
				return fail(spec.StatusKeyExists)
			}
			doc := req.Clone()
			doc.Delete(spec.FieldToken)
			s.data[key] = doc
			return ok().Set(spec.FieldKey, key)
		case spec.OpGet:
			doc, found := s.data[key]
			if !found {
				return fail(spec.StatusKeyNotFound)
			}
			resp := doc.Clone()
			for _, f := range ok().Fields() {
				raw, _ := ok().Raw(f)
				resp.SetRaw(f, raw)
			}
			return resp
		case spec.OpDelete:
			if _, found := s.data[key]; !found {
				return fail(spec.StatusKeyNotFound)
			}
			delete(s.data, key)
			return ok().Set(spec.FieldKey, key)
		}
		return fail(spec.StatusWrongOperation)
	}
	switch op {
	case spec.OpSave:
		s.saves++
		size, err := req.Size()
		if err != nil {
			return fail(spec.StatusFieldMissing)
		}
		if kerr != nil {
			key = "generated-key"
		}
		if f, found := s.files[key]; found && f.done {
			return fail(spec.StatusKeyExists)
		}
		if size == 0 && s.silentEmpty {
			return nil
		}
		f := &fakeFile{size: size, data: make([]byte, size), got: make([]bool, spec.TotalBlocks(size, s.blockSize))}
		s.files[key] = f
		resp := ok().Set(spec.FieldKey, key).Set(spec.FieldSize, size).
			Set(spec.FieldTotalBlock, len(f.got)).Set(spec.FieldBlockSize, s.blockSize)
		if size == 0 {
			f.done, f.digest = true, EmptyMD5
			resp.Set(spec.FieldMD5, EmptyMD5)
		}
		return resp
	case spec.OpUpload:
		f, found := s.files[key]
		if !found || f.done {
			return fail(spec.StatusWrongOperation)
		}
		i, err := req.BlockIndex()
		if err != nil || i < 0 {
			return fail(spec.StatusFieldMissing)
		}
		if i >= int64(len(f.got)) {
			return fail(spec.StatusBlockIndexRange)
		}
		if int64(len(req.Binary)) != spec.BlockLen(f.size, s.blockSize, i) {
			return fail(spec.StatusBlockSize)
		}
		copy(f.data[i*s.blockSize:], req.Binary)
		if i == s.corruptUpload {
			f.data[i*s.blockSize] ^= 0xff
		}
		f.got[i] = true
		s.uploads++
		resp := ok().Set(spec.FieldKey, key).Set(spec.FieldBlockIndex, i)
		for _, g := range f.got {
			if !g {
				return resp
			}
		}
		sum := md5.Sum(f.data)
		f.done, f.digest = true, hex.EncodeToString(sum[:])
		if !s.noMD5 && !s.noUploadMD5 {
			resp.Set(spec.FieldMD5, f.digest)
		}
		return resp
	case spec.OpGet:
		f, found := s.files[key]
		if !found || !f.done {
			return fail(spec.StatusKeyNotFound)
		}
		resp := ok().Set(spec.FieldKey, key).Set(spec.FieldSize, f.size).
			Set(spec.FieldTotalBlock, len(f.got)).Set(spec.FieldBlockSize, s.blockSize)
		if !s.noMD5 {
			resp.Set(spec.FieldMD5, f.digest)
		}
		return resp
	case spec.OpDownload:
		f, found := s.files[key]
		if !found || !f.done {
			return fail(spec.StatusKeyNotFound)
		}
		i, err := req.BlockIndex()
		if err != nil || i < 0 || i >= int64(len(f.got)) {
			return fail(spec.StatusFieldMissing)
		}
		n := spec.BlockLen(f.size, s.blockSize, i)
		resp := ok().Set(spec.FieldKey, key).Set(spec.FieldBlockIndex, i).Set(spec.FieldSize, n)
		resp.Binary = append([]byte(nil), f.data[i*s.blockSize:i*s.blockSize+n]...)
		if i == s.corruptBlock {
			resp.Binary[0] ^= 0xff
		}
		return resp
	case spec.OpDelete:
		respOp := op
		if s.deleteAsGET {
			respOp = spec.OpGet
		}
		if _, found := s.files[key]; !found {
			return spec.NewResponse(respOp, typ, spec.StatusKeyNotFound, "not found")
		}
		delete(s.files, key)
		return spec.NewResponse(respOp, typ, spec.StatusOK, "deleted").Set(spec.FieldKey, key)
	}
	return fail(spec.StatusWrongOperation)
}

// referenceFrame reads one frame the way the course server does (STEP.md
// A.23): each part (header, JSON, binary) is read with reads that ask for
// the part's whole length and keep all they return, so bytes of the next
// frame that come with the end of a part are taken into it and lost to
// the next frame. seg caps every read, as if each TCP segment carried at
// most seg bytes: a 20480-byte block then arrives in pieces.
func referenceFrame(conn net.Conn, seg int) (*spec.Message, error) {
	fill := func(buf []byte, n int) ([]byte, error) {
		for len(buf) < n {
			b := make([]byte, min(n, seg))
			k, err := conn.Read(b)
			if k == 0 {
				return nil, err
			}
			buf = append(buf, b[:k]...)
		}
		return buf, nil
	}
	buf, err := fill(nil, 8)
	if err != nil {
		return nil, err
	}
	jl, bl := binary.BigEndian.Uint32(buf), binary.BigEndian.Uint32(buf[4:])
	if jl > 1<<20 || bl > 1<<24 {
		// A header read from the middle of a frame: the course server
		// waits for bytes that never come.
		_, _ = io.Copy(io.Discard, conn)
		return nil, io.EOF
	}
	buf, err = fill(buf[8:], int(jl))
	if err != nil {
		return nil, err
	}
	m, err := spec.ParseMessage(buf[:jl])
	if err != nil {
		return nil, err // the course server closes the connection
	}
	if m.Binary, err = fill(buf[jl:], int(bl)); err != nil {
		return nil, err
	}
	return m, nil
}

// put stores a completed file directly.
func (s *fakeServer) put(key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := md5.Sum(data)
	s.files[key] = &fakeFile{size: int64(len(data)), data: append([]byte(nil), data...),
		got: make([]bool, spec.TotalBlocks(int64(len(data)), s.blockSize)), done: true, digest: hex.EncodeToString(sum[:])}
}

func (s *fakeServer) content(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	if !ok || !f.done {
		return nil, false
	}
	return append([]byte(nil), f.data...), true
}

// cutProxy forwards 127.0.0.1 connections to target and, on its first
// connection only, cuts both directions once cutAt bytes went client →
// server.
func cutProxy(t *testing.T, target string, cutAt int64) string {
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
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			limit := int64(-1)
			if first {
				limit, first = cutAt, false
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer c.Close()
				defer s.Close()
				var src io.Reader = c
				if limit >= 0 {
					src = io.LimitReader(c, limit)
				}
				io.Copy(s, src)
			}()
			go func() {
				defer wg.Done()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}
