package conformance_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/spec"
)

// fakeServer accepts TCP connections on 127.0.0.1 and hands each to handle.
func fakeServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// freePort returns an address nothing listens on.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// shortRead is the per-read timeout of the self-check runs: short, since
// some runs wait for silence on purpose, yet long enough for a loaded
// machine running the race detector.
const shortRead = 750 * time.Millisecond

func runAgainst(t *testing.T, addr string, selectors ...string) *conformance.Report {
	t.Helper()
	rep, err := conformance.Run(context.Background(), conformance.Options{
		Config:    conformance.Config{Target: addr, ReadTimeout: shortRead, CaseTimeout: 10 * time.Second},
		Selectors: selectors,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// allErrored checks that every case is an ERROR whose reason mentions want.
func allErrored(t *testing.T, rep *conformance.Report, want string) {
	t.Helper()
	if rep.Conformant {
		t.Fatal("a broken server was reported conformant")
	}
	if len(rep.Cases) == 0 {
		t.Fatal("no cases ran")
	}
	for _, c := range rep.Cases {
		if c.Outcome != conformance.Error {
			t.Fatalf("case %s: outcome %s, want ERROR", c.ID, c.Outcome)
		}
		if len(c.Findings) == 0 || !strings.Contains(c.Findings[0].Message, want) {
			t.Fatalf("case %s: reason %+v does not mention %q", c.ID, c.Findings, want)
		}
	}
}

// The badly broken servers of STEP-REFERENCE.md section 9 get a verdict
// from every case at once, not a read timeout per case.
func TestBrokenServerNothingListening(t *testing.T) {
	rep := runAgainst(t, freePort(t))
	allErrored(t, rep, "cannot be reached")
	if !strings.HasPrefix(rep.Preflight, "cannot connect") {
		t.Errorf("preflight %q", rep.Preflight)
	}
}

func TestBrokenServerUDPOnly(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rep := runAgainst(t, pc.LocalAddr().String(), "LOGIN", "DATA")
	allErrored(t, rep, "cannot be reached")
}

func TestBrokenServerNeverAnswers(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	rep := runAgainst(t, addr)
	allErrored(t, rep, "gave no STEP answer")
}

func TestBrokenServerClosesAtOnce(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {})
	rep := runAgainst(t, addr, "FILE")
	allErrored(t, rep, "gave no STEP answer")
}

// A server that reads a 16-byte header (one of the course's starter bugs)
// waits for bytes that never come.
func TestBrokenServerSixteenByteHeader(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			hdr := make([]byte, 16)
			if _, err := io.ReadFull(br, hdr); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:4])
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return
			}
		}
	})
	rep := runAgainst(t, addr)
	allErrored(t, rep, "gave no STEP answer")
}

func TestBrokenServerSpeaksHTTP(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		io.Copy(io.Discard, c)
	})
	rep := runAgainst(t, addr, "REQ", "DATA-GET")
	allErrored(t, rep, "gave no STEP answer")
}

// A server that answers every frame with the same LOGIN success gets fast
// FAILs, each naming a requirement, not timeouts.
func TestBrokenServerSameAnswerToEverything(t *testing.T) {
	answer := spec.NewResponse(spec.OpLogin, spec.TypeAuth, spec.StatusOK, "OK")
	answer.Set(spec.FieldToken, "dG9rZW4=")
	frame, _ := spec.EncodeFrame(answer)
	addr := fakeServer(t, func(c net.Conn) {
		r := spec.NewReader(c, spec.Limits{})
		for {
			if _, err := r.ReadFrame(); err != nil {
				return
			}
			if _, err := c.Write(frame); err != nil {
				return
			}
		}
	})
	rep := runAgainst(t, addr, "DATA", "TOKEN-1", "FILE-UPLOAD-3", "REQ-1", "LOGIN-4")
	if rep.Conformant {
		t.Fatal("reported conformant")
	}
	fails := rep.Broken(conformance.Fail)
	for _, id := range []string{"DATA-GET-2", "DATA-SAVE-3", "TOKEN-1", "FILE-UPLOAD-3", "REQ-1", "LOGIN-4"} {
		if !fails[id] {
			t.Errorf("%s not reported as FAIL", id)
		}
	}
	for _, c := range rep.Cases {
		if c.Outcome == conformance.Error {
			t.Errorf("case %s errored: %v", c.ID, c.Findings)
		}
	}
}

// A server that answers LOGIN and then stays silent on everything fails each
// case after one read timeout, naming REQ-6, and the run ends.
func TestBrokenServerSilentAfterLogin(t *testing.T) {
	answer := spec.NewResponse(spec.OpLogin, spec.TypeAuth, spec.StatusOK, "OK")
	answer.Set(spec.FieldToken, "dG9rZW4=")
	frame, _ := spec.EncodeFrame(answer)
	addr := fakeServer(t, func(c net.Conn) {
		r := spec.NewReader(c, spec.Limits{})
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			if m.Operation() == spec.OpLogin {
				c.Write(frame)
			}
		}
	})
	rep := runAgainst(t, addr, "DATA-GET")
	fails := rep.Broken(conformance.Fail)
	if !fails["REQ-6"] || !fails["DATA-GET-2"] {
		t.Fatalf("silence not reported against REQ-6 and the case's requirement: %v", fails)
	}
}

// A server that serves one connection at a time (a course variant) stalls
// a client holding two: the suite names CONN-3, not only the case's own
// requirement.
func TestBrokenServerOneConnectionAtATime(t *testing.T) {
	addr := startProxyMode(t, selfCheckServer(t), &mutation{name: "serial"}, true)
	rep := runAgainst(t, addr, "CONN-3", "ISO-1", "DATA-GET-2")
	// Found at preflight: the run is serial, and says why.
	if e := rep.Execution; e == nil || e.Mode != "serial" || !strings.Contains(e.Reason, "one connection at a time") || !strings.Contains(e.Silence, "same connection") {
		t.Errorf("execution %+v", rep.Execution)
	}
	fails := rep.Broken(conformance.Fail)
	if !fails["CONN-3"] {
		t.Fatalf("CONN-3 not reported: %v", fails)
	}
	if c, ok := rep.Case("DATA-GET-2"); !ok || c.Outcome != conformance.Pass {
		t.Errorf("a one-connection case should pass: %+v", c)
	}
}
