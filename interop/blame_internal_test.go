package interop

import (
	"strings"
	"testing"
	"time"
)

func msg(conn, seq int, fromClient bool, at time.Duration, op, typ string, status int) *wireMsg {
	m := &wireMsg{Conn: conn, Seq: seq, FromClient: fromClient, At: at, Op: op, Type: typ, Status: status, BlockIndex: -1, Size: -1, Key: "f.bin"}
	if !fromClient {
		m.Answers = seq - 1
	}
	return m
}

// TestBlameTimeLimit: a client the time limit ended while its exchanges
// were answered is not blamed; one whose request waited past
// unansweredMin blames the server's silence, as the capture shows it.
func TestBlameTimeLimit(t *testing.T) {
	plan := msg(1, 4, false, 20*time.Millisecond, "SAVE", "FILE", 200)
	plan.TotalBlock, plan.BlockSize = 3, 20480
	save := msg(1, 3, true, 10*time.Millisecond, "SAVE", "FILE", -1)
	save.Size = 50000
	up := msg(1, 5, true, 30*time.Millisecond, "UPLOAD", "FILE", -1)
	up.BlockIndex, up.BinLen = 0, 20480
	w := &wire{Msgs: []*wireMsg{
		msg(1, 1, true, 0, "LOGIN", "AUTH", -1), msg(1, 2, false, 5*time.Millisecond, "LOGIN", "AUTH", 200),
		save, plan, up,
	}, Conns: []*wireConn{{ID: 1, FirstRequest: 0, FirstResponse: 5 * time.Millisecond, Last: 20 * time.Second, Requests: 3, Responses: 2, ClientClosed: -1}}}
	w.Notes = []wireNote{{Conn: 1, Kind: "request-never-answered", Text: "request #5 UPLOAD"}}
	r := &ScenarioResult{File: "f.bin", Size: 50000, Connections: 1, ClientTimedOut: true, ClientExitCode: -1, wire: w}

	side, req, line := decide(r, Pass, Pass)
	if side != SideServer || req != "REQ-6" || !strings.Contains(line, "never answered request #5 UPLOAD block 0 (REQ-6); the time limit ended the client after it had waited 20.0 s") {
		t.Errorf("a request silent for 20 s: %s %s %q", side, req, line)
	}
	w.Conns[0].Last = 2 * time.Second // the limit came 2 s after the request: a slow machine, not silence
	side, req, line = decide(r, Pass, Pass)
	if side != SideUnclear || req != "" || !strings.Contains(line, "the time limit ended the client while it was still at work (1 of the plan's 3 blocks sent, 0 answered 200)") {
		t.Errorf("a request 2 s old at the time limit: %s %s %q", side, req, line)
	}
}

// TestStalledConn: a second connection answered only once the client
// closed the first is a server serving one connection at a time; one
// answered at once, or answered late while the first stayed open, is not.
func TestStalledConn(t *testing.T) {
	first := &wireConn{ID: 1, First: 0, FirstRequest: 0, FirstResponse: time.Millisecond, Last: 3010 * time.Millisecond, Requests: 1, Responses: 1, ClientClosed: 3 * time.Second}
	second := &wireConn{ID: 2, First: 10 * time.Millisecond, FirstRequest: 12 * time.Millisecond, FirstResponse: 3005 * time.Millisecond, Last: 3020 * time.Millisecond, Requests: 1, Responses: 1, ClientClosed: 3 * time.Second}
	w := &wire{Conns: []*wireConn{first, second}}
	line, ok := stalledConn(w)
	if !ok || line != "server: serves one connection at a time; the client's second connection waited 3.0 s while its first was open (CONN-3)" {
		t.Errorf("answered after the first closed: %v %q", ok, line)
	}
	second.FirstResponse = 14 * time.Millisecond
	if line, ok := stalledConn(w); ok {
		t.Errorf("answered at once: %q", line)
	}
	second.FirstResponse = 2 * time.Second // slow, but while the first was open
	if line, ok := stalledConn(w); ok {
		t.Errorf("answered late while the first was open: %q", line)
	}
	second.FirstResponse = -1 // never answered
	if _, ok := stalledConn(w); !ok {
		t.Error("a second connection never answered is not a stall")
	}
}

// TestBlameGarbage: bytes that are no frame are blamed on the side that
// sent them.
func TestBlameGarbage(t *testing.T) {
	for _, fromClient := range []bool{true, false} {
		w := &wire{Notes: []wireNote{{Conn: 1, FromClient: fromClient, Kind: "undecodable-frame", Text: "frame #1 at stream offset 0 (17+0 bytes) does not decode: not a JSON object"}}}
		r := &ScenarioResult{File: "f.bin", Connections: 1, ClientExitCode: 1, wire: w}
		side, req, line := decide(r, Pass, Pass)
		want := SideClient
		if !fromClient {
			want = SideServer
		}
		if side != want || req != "FRAME-1" || !strings.HasPrefix(line, want+": sent bytes that are not a STEP frame (FRAME-1): frame #1") {
			t.Errorf("garbage from the client %v: %s %s %q", fromClient, side, req, line)
		}
	}
}

// TestBlameLateAnswer: an answer that came after the client had closed
// its connection is a deadline against a slow server: unclear.
func TestBlameLateAnswer(t *testing.T) {
	login, ok := msg(1, 1, true, 0, "LOGIN", "AUTH", -1), msg(1, 2, false, 3500*time.Millisecond, "LOGIN", "AUTH", 200)
	w := &wire{Msgs: []*wireMsg{login, ok},
		Conns: []*wireConn{{ID: 1, FirstRequest: 0, FirstResponse: 3500 * time.Millisecond, Last: 3600 * time.Millisecond, Requests: 1, Responses: 1, ClientClosed: 3 * time.Second}}}
	r := &ScenarioResult{File: "f.bin", Connections: 1, ClientExitCode: 1, wire: w}
	side, req, line := decide(r, Pass, Pass)
	if side != SideUnclear || req != "" || line != "unclear: the client gave up on request #1 AUTH LOGIN after 3.0 s; the server answered it 3.5 s after it was sent (its own deadline against a slow server)" {
		t.Errorf("%s %s %q", side, req, line)
	}
	// BYE is not waited for: its late answer says nothing.
	login.Op, ok.Op = "BYE", "BYE"
	if _, _, line := decide(r, Pass, Pass); strings.Contains(line, "gave up") {
		t.Errorf("a BYE answered after the client closed: %q", line)
	}
}
