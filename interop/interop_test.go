package interop_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
	"github.com/stepkit/stepkit/interop"
)

// The known defects of the fixture class, and the blame each must get:
// the side, the requirement, and the words of the line. Every other pair
// passes.
type want struct {
	side, req string
	line      *regexp.Regexp
	scenarios []string
}

var (
	blameBlockSize = want{"client", "CLIENT-1",
		regexp.MustCompile(`^client: ignores the plan's block_size 12800 \(CLIENT-1\): sent 20480-byte blocks, refused 406`),
		[]string{"course", "multiblock", "nonascii"}}
	blameCharCount = want{"client", "FRAME-2",
		regexp.MustCompile(`^client: counts JSON lengths in characters \(FRAME-2\): the header of request #3 FILE SAVE says \d+, its JSON is \d+ bytes of UTF-8, answered 400 "bad JSON"`),
		[]string{"nonascii"}}
	blameOneConn = want{"server", "CONN-3",
		regexp.MustCompile(`^server: serves one connection at a time; the client's second connection waited [0-9.]+ s while its first was open \(CONN-3\)`),
		[]string{"course", "multiblock", "nonascii"}}
	expected = map[[2]string]want{
		{"plan12800", "fixedblock"}: blameBlockSize,
		{"good", "charcount"}:       blameCharCount,
		{"plan12800", "charcount"}:  blameCharCount,
		{"single", "charcount"}:     blameCharCount,
		{"threaded", "charcount"}:   blameCharCount,
		{"single", "twoconn"}:       blameOneConn,
	}
)

var (
	runOnce sync.Once
	runM    *interop.Matrix
	runOut  string
	runErr  error
)

// fixtureMatrix runs the whole fixture class once for the tests that read
// its reports.
func fixtureMatrix(t *testing.T) (*interop.Matrix, string) {
	t.Helper()
	requireSandbox(t)
	runOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stepkit-interop-class-")
		if err != nil {
			runErr = err
			return
		}
		srv, cli := class(t, dir, fixtureServers, fixtureClients)
		runOut = filepath.Join(dir, "out")
		runM, runErr = interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Out: runOut,
			Conformance: true, Stepkit: stepkitBin, ClientTimeout: 60 * time.Second})
	})
	if runErr != nil {
		t.Fatal(runErr)
	}
	return runM, runOut
}

// TestBlame runs the fixture class and checks every cell: each failing
// pair is blamed on the side with the defect, with the requirement and
// the evidence in its line; every pair of correct programs passes.
func TestBlame(t *testing.T) {
	m, _ := fixtureMatrix(t)
	if m.Servers[0].ID != interop.ReferenceID || m.Clients[0].ID != interop.ReferenceID {
		t.Fatalf("stepkit's own programs are not first: %s, %s", m.Servers[0].ID, m.Clients[0].ID)
	}
	for _, row := range m.Cells {
		for _, c := range row {
			w, defect := expected[[2]string{c.Server, c.Client}]
			if !defect {
				if c.Outcome != interop.Pass {
					t.Errorf("%s × %s: %s, want PASS: %s", c.Server, c.Client, c.Outcome, c.Blame)
				}
				continue
			}
			if c.Outcome != interop.Fail || c.Side != w.side || c.Requirement != w.req || !w.line.MatchString(c.Blame) {
				t.Errorf("%s × %s: %s, side %q, requirement %q, blame %q; want FAIL on the %s (%s) matching %s",
					c.Server, c.Client, c.Outcome, c.Side, c.Requirement, c.Blame, w.side, w.req, w.line)
			}
			failing := map[string]bool{}
			for _, s := range w.scenarios {
				failing[s] = true
			}
			for _, r := range c.Scenarios {
				switch {
				case failing[r.Scenario] && (r.Outcome != interop.Fail || !w.line.MatchString(r.Blame)):
					t.Errorf("%s × %s, %s: %s %q, want FAIL matching %s", c.Server, c.Client, r.Scenario, r.Outcome, r.Blame, w.line)
				case !failing[r.Scenario] && r.Outcome == interop.Fail:
					t.Errorf("%s × %s, %s: FAIL %q, want it to pass", c.Server, c.Client, r.Scenario, r.Blame)
				}
			}
			// The blamed side's own conformance agrees, and says so.
			if !strings.Contains(c.Blame, "[own conformance: "+w.req+" FAIL]") {
				t.Errorf("%s × %s: the blame does not quote the %s's own %s FAIL: %q", c.Server, c.Client, w.side, w.req, c.Blame)
			}
			// The evidence names each side against stepkit's own peer.
			ev := strings.Join(c.Evidence, "\n")
			if !strings.Contains(ev, "against stepkit's server: PASS") || !strings.Contains(ev, "stepkit's client against server "+c.Server+": PASS") {
				t.Errorf("%s × %s: the evidence lacks the reference pairs:\n%s", c.Server, c.Client, ev)
			}
		}
	}
	// The download scenario ran where the template has {dir}.
	for _, row := range m.Cells {
		for _, c := range row {
			last := c.Scenarios[len(c.Scenarios)-1]
			wantNA := c.Client != "good" && c.Client != interop.ReferenceID
			if (last.Outcome == interop.NotApplicable) != wantNA {
				t.Errorf("%s × %s: download %s", c.Server, c.Client, last.Outcome)
			}
			if !wantNA && last.Outcome == interop.Pass && last.DownloadMD5 != last.WantMD5 {
				t.Errorf("%s × %s: download passed with MD5 %s, want %s", c.Server, c.Client, last.DownloadMD5, last.WantMD5)
			}
		}
	}
}

// TestCapturesDecode checks that each scenario's pcapng holds the
// messages the relay carried: stepkit dump decodes them (the exact
// sequence of the fixture client's course flow), and so does tshark with
// stepkit's dissector.
func TestCapturesDecode(t *testing.T) {
	m, out := fixtureMatrix(t)
	// The fixedblock client against a server planning 20480-byte blocks
	// does the course flow exactly.
	c := m.Cell("good", "fixedblock")
	course := c.Scenarios[0]
	pcap := filepath.Join(out, course.Capture)
	dump := exec.Command(stepkitBin, "dump", "--json", pcap)
	b, err := dump.Output()
	if err != nil {
		t.Fatalf("stepkit dump %s: %v", pcap, err)
	}
	var ops []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var msg struct {
			Operation string `json:"operation"`
			Dir       string `json:"dir"`
			Status    *int   `json:"status"`
			Kind      string `json:"kind"`
		}
		if err := json.Unmarshal([]byte(line), &msg); err != nil {
			t.Fatalf("stepkit dump --json line %q: %v", line, err)
		}
		if msg.Operation != "" {
			ops = append(ops, msg.Operation)
		}
	}
	// LOGIN, FILE SAVE, then 16 blocks of 20480 bytes (300 KiB + 777),
	// each request answered.
	wantOps := []string{"LOGIN", "LOGIN", "SAVE", "SAVE"}
	for i := 0; i < 16; i++ {
		wantOps = append(wantOps, "UPLOAD", "UPLOAD")
	}
	if strings.Join(ops, " ") != strings.Join(wantOps, " ") {
		t.Errorf("stepkit dump decodes %d messages %v, want %v", len(ops), ops, wantOps)
	}
	if course.Messages != len(wantOps) {
		t.Errorf("the cell counts %d messages, want %d", course.Messages, len(wantOps))
	}
	// Every capture of the run decodes, and the failing ones show their
	// diagnosis.
	for _, row := range m.Cells {
		for _, cell := range row {
			for _, r := range cell.Scenarios {
				if r.Outcome == interop.NotApplicable {
					continue
				}
				if _, err := os.Stat(filepath.Join(out, r.Capture)); err != nil {
					t.Errorf("%s × %s %s: no capture: %v", cell.Server, cell.Client, r.Scenario, err)
				}
				if r.Messages == 0 {
					t.Errorf("%s × %s %s: the capture decodes to no message", cell.Server, cell.Client, r.Scenario)
				}
			}
		}
	}
	cc := m.Cell("plan12800", "fixedblock").Scenarios[0]
	if !strings.Contains(strings.Join(cc.Diagnoses, "\n"), "wrong-block-size") {
		t.Errorf("plan12800 × fixedblock: no wrong-block-size diagnosis: %v", cc.Diagnoses)
	}

	tshark, err := exec.LookPath("tshark")
	requireTool(t, err == nil, "tshark is not installed")
	lua, _ := filepath.Abs("../stepdump/wireshark/step.lua")
	for _, p := range []string{pcap, filepath.Join(out, m.Cell("good", "charcount").Scenarios[2].Capture)} {
		ts := exec.Command(tshark, "-n", "-r", p, "-X", "lua_script:"+lua, "-Y", "step",
			"-T", "fields", "-e", "step.summary", "-E", "occurrence=a", "-E", "aggregator=|")
		ts.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stderr bytes.Buffer
		ts.Stderr = &stderr
		tb, err := ts.Output()
		if err != nil || bytes.Contains(tb, []byte("Lua Error")) || bytes.Contains(stderr.Bytes(), []byte("Lua Error")) {
			t.Fatalf("tshark %s: %v\n%s%s", p, err, tb, stderr.Bytes())
		}
		n := 0
		for _, line := range strings.Split(string(tb), "\n") {
			for _, s := range strings.Split(line, "|") {
				if strings.TrimSpace(s) != "" {
					n++
				}
			}
		}
		dm := 0
		for _, row := range m.Cells {
			for _, cell := range row {
				for _, r := range cell.Scenarios {
					if filepath.Join(out, r.Capture) == p {
						dm = r.Messages
					}
				}
			}
		}
		if n != dm {
			t.Errorf("tshark with step.lua shows %d STEP messages in %s, stepdump %d:\n%s", n, p, dm, tb)
		}
	}
}

// TestReports checks the files of the run: the CSV has a row per pair,
// the JSON keeps to its schema, every cell page and student page exists
// and links what a student needs.
func TestReports(t *testing.T) {
	m, out := fixtureMatrix(t)
	f, err := os.Open(filepath.Join(out, "interop.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.Servers) * len(m.Clients); len(recs) != n+1 {
		t.Fatalf("interop.csv has %d rows, want %d and a header", len(recs)-1, n)
	}
	if recs[1][0] != "stepkit" || recs[1][1] != "stepkit" {
		t.Errorf("interop.csv's first row is %v, want stepkit's own pair", recs[1])
	}
	b, err := os.ReadFile(filepath.Join(out, "interop.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(interop.Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	checkSchema(t, schema, schema, doc, "")

	page, err := os.ReadFile(filepath.Join(out, "interop.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`stepkit (reference)`, `class="c fail-client"`, `class="c fail-server"`, `id="sort-rows"`,
		`href="cells/single/twoconn/index.html"`, "serves one connection at a time"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("interop.html lacks %q", s)
		}
	}
	cell := m.Cell("single", "twoconn")
	cp, err := os.ReadFile(filepath.Join(out, cell.Page))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"course.pcapng", "course.ladder.html", "course.client.txt", "server.txt", "CONN-3"} {
		if !strings.Contains(string(cp), s) {
			t.Errorf("the cell page lacks %q", s)
		}
	}
	for _, p := range []string{"course.ladder.html", "course.client.txt", "server.txt", "course.dump.txt"} {
		if _, err := os.Stat(filepath.Join(out, cell.Dir, p)); err != nil {
			t.Errorf("cell file: %v", err)
		}
	}
	sp, err := os.ReadFile(filepath.Join(out, "clients", "charcount.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(sp), "FRAME-2"); n < 4 {
		t.Errorf("the charcount client's page shows FRAME-2 %d times, want one per student server", n)
	}
}

// checkSchema checks doc against the parts of JSON Schema interop's schema
// uses, and that the schema describes every field the report has.
func checkSchema(t *testing.T, root, s map[string]any, doc any, path string) {
	t.Helper()
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			t.Fatalf("%s: the schema has no %s", path, ref)
		}
		checkSchema(t, root, def, doc, path)
		return
	}
	if c, ok := s["const"]; ok && c != doc {
		t.Errorf("%s: %v, want %v", path, doc, c)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, v := range e {
			found = found || v == doc
		}
		if !found {
			t.Errorf("%s: %v is not one of %v", path, doc, e)
		}
	}
	switch s["type"] {
	case "object":
		obj, ok := doc.(map[string]any)
		if !ok {
			t.Errorf("%s: not an object", path)
			return
		}
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				t.Errorf("%s: lacks %s", path, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		for k, v := range obj {
			switch ps, ok := props[k].(map[string]any); {
			case ok:
				checkSchema(t, root, ps, v, path+"/"+k)
			case extra != nil:
				checkSchema(t, root, extra, v, path+"/"+k)
			default:
				t.Errorf("%s/%s: a field the schema does not describe", path, k)
			}
		}
	case "array":
		arr, ok := doc.([]any)
		if !ok {
			t.Errorf("%s: not an array", path)
			return
		}
		if is, ok := s["items"].(map[string]any); ok {
			for i, v := range arr {
				checkSchema(t, root, is, v, path+"/"+string(rune('0'+i%10)))
			}
		}
	case "string":
		if _, ok := doc.(string); !ok {
			t.Errorf("%s: %v is not a string", path, doc)
		}
	case "integer", "number":
		if _, ok := doc.(float64); !ok {
			t.Errorf("%s: %v is not a number", path, doc)
		}
	case "boolean":
		if _, ok := doc.(bool); !ok {
			t.Errorf("%s: %v is not a boolean", path, doc)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestMisbehavingPrograms checks the pairs where a program does not get as
// far as a transfer: a server that never listens, a server that dies in
// the middle, a client that never connects. Each gets a line that names
// it, and the other side passes with stepkit's peer.
func TestMisbehavingPrograms(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	srv, cli := class(t, dir, []fixture{
		{"hang", `python3 -c "import time; time.sleep(60)"`},
		{"crash", serverRun + " --crash-on-upload"},
	}, []fixture{
		{"noconnect", `python3 -c "import sys; sys.exit('no server here')" {file}`},
		{"liar", clientRun + " --stop-after 2 --lie"},
	})
	m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Out: filepath.Join(dir, "out"),
		Scenarios: interop.Scenarios()[:1], StartTimeout: 10 * time.Second, ClientTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wants := map[[2]string]string{
		{"stepkit", "stepkit"}:   "",
		{"stepkit", "noconnect"}: `^client: never connected to 127\.0\.0\.1:1379 \(exit status 1: no server here\)$`,
		{"hang", "stepkit"}:      `^server: never listened on 127\.0\.0\.1:1379 within 10s \(CONN-6\)$`,
		{"hang", "noconnect"}:    `^server: never listened on 127\.0\.0\.1:1379 within 10s \(CONN-6\)$`,
		{"crash", "stepkit"}:     `^server: died during this scenario: exit status 3`,
		{"crash", "noconnect"}:   `^client: never connected`,
		{"stepkit", "liar"}:      `^client: stopped after 2 of the plan's 16 blocks, every one answered 200 \(CLIENT-5\); the client still exited 0 \(CLIENT-6\)$`,
		{"hang", "liar"}:         `^server: never listened`,
		{"crash", "liar"}:        `^server: died during this scenario: exit status 3; the client still exited 0 \(CLIENT-6\)$`,
	}
	for _, row := range m.Cells {
		for _, c := range row {
			w, ok := wants[[2]string{c.Server, c.Client}]
			if !ok {
				t.Fatalf("unexpected cell %s × %s", c.Server, c.Client)
			}
			if w == "" {
				if c.Outcome != interop.Pass {
					t.Errorf("%s × %s: %s %q, want PASS", c.Server, c.Client, c.Outcome, c.Blame)
				}
				continue
			}
			if c.Outcome != interop.Fail || !regexp.MustCompile(w).MatchString(c.Blame) {
				t.Errorf("%s × %s: %s %q, want FAIL matching %s", c.Server, c.Client, c.Outcome, c.Blame, w)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "interop.html")); err != nil {
		t.Error(err)
	}
}

// TestBadOptions checks that what cannot be run is said before anything
// runs.
func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	srv, cli := class(t, dir, fixtureServers[:1], []fixture{{"nofile", "python3 client.py --server_ip {host}"}})
	for _, tc := range []struct {
		o    interop.Options
		want string
	}{
		{interop.Options{Servers: srv, Clients: cli, Out: dir}, "has no {file}"},
		{interop.Options{Clients: []grade.Submission{{ID: "x", Dir: dir}}, Out: dir, ClientRun: "python3 c.py {nope} {file}"}, "unknown placeholder {nope}"},
		{interop.Options{Out: dir}, "no server and no client"},
		{interop.Options{Servers: srv}, "no report folder"},
		{interop.Options{Servers: srv, Out: dir, Scenarios: []interop.Scenario{interop.Scenarios()[0], interop.Scenarios()[0]}}, "scenario course twice"},
	} {
		_, err := interop.Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run: %v, want an error saying %q", err, tc.want)
		}
	}
	stepkitStudent := []fixture{{"stepkit", serverRun}}
	s2, _ := class(t, t.TempDir(), stepkitStudent, nil)
	if _, err := interop.Run(context.Background(), interop.Options{Servers: s2, Out: dir}); err == nil || !strings.Contains(err.Error(), "may not be called") {
		t.Errorf("a student called stepkit: %v", err)
	}
}

// TestFlood: a client that streams bytes without end into a server that
// reads them all is cut off by the relay's bound, and blamed; a server
// that never answers is blamed for its silence.
func TestFlood(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	sink := filepath.Join(dir, "servers", "sink")
	flood := filepath.Join(dir, "clients", "flood")
	for _, d := range []string{sink, flood} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(sink, "server.py"), []byte(`import socket, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 1379))
l.listen(8)
def drain(c):
    while c.recv(1 << 16):
        pass
while True:
    c, _ = l.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
`), 0o644)
	os.WriteFile(filepath.Join(flood, "client.py"), []byte(`import socket
s = socket.create_connection(("127.0.0.1", 1379))
b = b"\x00\x00\x00\x10" * 16384
for _ in range(4096):
    s.sendall(b)
`), 0o644)
	m, err := interop.Run(context.Background(), interop.Options{
		Servers: []grade.Submission{{ID: "sink", Dir: sink}}, Clients: []grade.Submission{{ID: "flood", Dir: flood, Run: "python3 client.py {file}"}},
		Out: filepath.Join(dir, "out"), Scenarios: interop.Scenarios()[:1], ClientTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ server, client, re string }{
		{"sink", "flood", `^client: sent more than 64 MiB in one scenario of a few MiB; the relay ended the connection$`},
		{"sink", "stepkit", `^server: never answered request #1 AUTH LOGIN \(REQ-6\); the client gave up after [0-9.]+ s$`},
	} {
		c := m.Cell(w.server, w.client)
		if c.Outcome != interop.Fail || !regexp.MustCompile(w.re).MatchString(c.Blame) {
			t.Errorf("%s × %s: %s %q, want FAIL matching %s", w.server, w.client, c.Outcome, c.Blame, w.re)
		}
	}
	if c := m.Cell("stepkit", "flood"); c.Outcome != interop.Fail || c.Side != "client" {
		t.Errorf("stepkit × flood: %s %s %q, want the client blamed", c.Outcome, c.Side, c.Blame)
	}
}

// TestSharedServer checks how a server process serves several cells of its
// row in turn: each client logs in as its own user, a cell that fails on a
// server that served others runs again on a fresh one, whose verdict it
// keeps, and each cell's page says which server process it met.
func TestSharedServer(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	good := clientRun + " --dir {dir}"
	srv, cli := class(t, dir, []fixture{{"wornout", serverRun + " --users 2"}, {"good", serverRun}},
		[]fixture{{"a", good}, {"b", good}, {"c", good}})
	out := filepath.Join(dir, "out")
	m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Out: out,
		Scenarios: interop.Scenarios()[:1], ClientTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]string{}
	for _, row := range m.Cells {
		for col, c := range row {
			if c.Outcome != interop.Pass {
				t.Errorf("%s × %s: %s %q", c.Server, c.Client, c.Outcome, c.Blame)
			}
			if want := strconv.Itoa(2362202 + col); c.User != want {
				t.Errorf("%s × %s: logged in as %q, want %s", c.Server, c.Client, c.User, want)
			}
			served[c.Server+" × "+c.Client] = strings.Join(c.ServedBefore, " ") + "|" + c.Rerun
			// A client given {dir} finds the folder in every scenario: it
			// downloads back and exits 0 in the course flow too.
			for _, r := range c.Scenarios {
				if r.ClientExitCode != 0 {
					t.Errorf("%s × %s %s: client %s (%s)", c.Server, c.Client, r.Scenario, r.ClientExit, r.ClientLast)
				}
			}
		}
	}
	wants := map[string]string{
		"stepkit × stepkit": "|", "stepkit × c": "stepkit a b|",
		"wornout × stepkit": "|", "wornout × a": "stepkit|",
		// The third user is refused by the worn-out server, not by a fresh one.
		"wornout × b": "|FAIL on a server process that had served stepkit, a before this cell; run again on a fresh one, whose verdict this is",
		"wornout × c": "b|",
		"good × c":    "stepkit a b|",
	}
	for k, w := range wants {
		if served[k] != w {
			t.Errorf("%s: served before|rerun %q, want %q", k, served[k], w)
		}
	}
	page, err := os.ReadFile(filepath.Join(out, "cells", "wornout", "c", "server.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(page), "(the server process started for the cell of client b and served b before this cell") {
		t.Errorf("server output of wornout × c: %q", page)
	}
	client, err := os.ReadFile(filepath.Join(out, "cells", "wornout", "c", "course.client.txt"))
	if err != nil || !strings.Contains(string(client), "--id 2362205") {
		t.Errorf("client output of wornout × c: %q %v", client, err)
	}
	html, err := os.ReadFile(filepath.Join(out, "cells", "wornout", "b", "index.html"))
	if err != nil || !strings.Contains(string(html), "This cell ran twice: FAIL on a server process that had served stepkit, a before this cell") {
		t.Errorf("the page of wornout × b does not say it ran twice: %v", err)
	}
}

// TestOwnChecksCannotRun: when the programs' own checks cannot run (here
// their report folder cannot be made), the pairs running beside them are
// stopped and Run says why, instead of blaming without them.
func TestOwnChecksCannotRun(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	srv, cli := class(t, dir, fixtureServers[:1], fixtureClients[:1])
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "conformance"), []byte("in the way\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Out: out,
		Scenarios: interop.Scenarios()[:1], Conformance: true, Stepkit: stepkitBin, ClientTimeout: 60 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "conformance of the") {
		t.Fatalf("Run: %v, want the own checks' error", err)
	}
	if m != nil {
		t.Errorf("Run returned a matrix beside its error")
	}
	if _, err := os.Stat(filepath.Join(out, "interop.html")); err == nil {
		t.Errorf("interop.html written although the own checks could not run")
	}
}
