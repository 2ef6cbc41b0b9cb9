package interop

import (
	"fmt"
	"strings"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// blameAll decides every cell's outcome and blame, once every cell has
// run: the evidence includes each side's result against stepkit's own
// program, the matrix's first row and column.
func (m *Matrix) blameAll() {
	for s, row := range m.Cells {
		for c, cell := range row {
			if cell == nil {
				continue
			}
			m.blameCell(s, c, cell)
			cell.DurationMS = cell.Duration.Milliseconds()
			cell.Page = cell.Dir + "/index.html"
		}
	}
	for s := range m.Servers {
		m.Servers[s].Passed, m.Servers[s].Pairs = 0, 0
	}
	for c := range m.Clients {
		m.Clients[c].Passed, m.Clients[c].Pairs = 0, 0
	}
	for s, row := range m.Cells {
		for c, cell := range row {
			if cell == nil || cell.Outcome == Error {
				continue
			}
			m.Servers[s].Pairs++
			m.Clients[c].Pairs++
			if cell.Outcome == Pass {
				m.Servers[s].Passed++
				m.Clients[c].Passed++
			}
		}
	}
}

func (m *Matrix) blameCell(s, c int, cell *Cell) {
	switch {
	case cell.Error != "":
		cell.Outcome, cell.Side, cell.Blame = Error, "", "grader error: "+cell.Error
		return
	case cell.ServerProblem != "":
		cell.Outcome, cell.Side = Fail, SideServer
		cell.Blame = "server: " + cell.ServerProblem
		if strings.HasPrefix(cell.ServerProblem, "never listened") {
			cell.Requirement = "CONN-6"
			cell.Blame += " (CONN-6)"
		}
		if p := m.Servers[s].Conformance; p != nil && p.Problem != "" {
			cell.Evidence = append(cell.Evidence, "its own grading: "+p.Verdict+": "+p.Problem)
		}
		return
	}
	cell.Outcome = Pass
	for i, r := range cell.Scenarios {
		switch r.Outcome {
		case Error:
			if cell.Outcome == Pass {
				cell.Outcome, cell.Blame = Error, "grader error: "+r.Error
			}
			continue
		case Fail:
		default:
			continue
		}
		m.blameScenario(s, c, i, r)
		if cell.Outcome != Fail {
			cell.Outcome, cell.Side, cell.Requirement, cell.Blame, cell.Evidence = Fail, r.Side, r.Requirement, r.Blame, r.Evidence
		}
	}
}

// refOutcome is a scenario's outcome in another cell.
func (m *Matrix) refOutcome(s, c, i int) (Outcome, string) {
	if s >= len(m.Cells) || c >= len(m.Cells[s]) || m.Cells[s][c] == nil {
		return "", ""
	}
	cell := m.Cells[s][c]
	if cell.ServerProblem != "" {
		return Fail, cell.ServerProblem
	}
	if i >= len(cell.Scenarios) {
		return cell.Outcome, cell.Error
	}
	r := cell.Scenarios[i]
	return r.Outcome, r.Blame
}

// verdict gives a program's own verdict on a requirement, "" when unknown.
func verdict(p Program, req string) string {
	if p.Conformance == nil || req == "" {
		return ""
	}
	return p.Conformance.Requirements[req]
}

// blameScenario decides who broke a failing scenario, from the capture
// first, then the side's own conformance and the reference pairs.
func (m *Matrix) blameScenario(s, c, i int, r *ScenarioResult) {
	sp, cp := m.Servers[s], m.Clients[c]
	refServer, refServerWhy := m.refOutcome(0, c, i) // this client against stepkit's server
	refClient, refClientWhy := m.refOutcome(s, 0, i) // stepkit's client against this server
	side, req, line := decide(r, refServer, refClient)
	r.Side, r.Requirement = side, req
	r.Blame = line
	if r.falseSuccess() && req != "CLIENT-6" {
		r.Blame += "; the client still exited 0 (CLIENT-6)"
	}
	// The evidence beside the capture.
	var ev []string
	for j, d := range r.Diagnoses {
		if j == 3 {
			ev = append(ev, fmt.Sprintf("capture: %d more diagnoses", len(r.Diagnoses)-3))
			break
		}
		ev = append(ev, "capture: "+d)
	}
	ev = append(ev, "client: "+r.ClientExit+lastLineText(r.ClientLast))
	switch {
	case r.StoredErr != "":
		ev = append(ev, "server's storage: FILE GET afterwards: "+r.StoredErr)
	default:
		ev = append(ev, fmt.Sprintf("server's storage: %d bytes, MD5 %s (the file: %d bytes, MD5 %s)", r.StoredSize, r.StoredMD5, r.Size, r.WantMD5))
	}
	if r.DownloadErr != "" {
		ev = append(ev, "download: "+r.DownloadErr)
	} else if r.DownloadMD5 != "" {
		ev = append(ev, "download: MD5 "+r.DownloadMD5)
	}
	if !cp.Reference && s != 0 {
		note := whyText(refServerWhy)
		if req == "FRAME-2" && side == SideClient && refServer == Pass {
			note = " (stepkit's server recovers a frame whose JSON length counts characters, EXT-5; most servers do not)"
		}
		ev = append(ev, fmt.Sprintf("client %s against stepkit's server: %s%s", cp.ID, refServer, note))
	}
	if !sp.Reference && c != 0 {
		ev = append(ev, fmt.Sprintf("stepkit's client against server %s: %s%s", sp.ID, refClient, whyText(refClientWhy)))
	}
	for _, p := range []struct {
		prog  Program
		whose string
	}{{sp, "server"}, {cp, "client"}} {
		if v := verdict(p.prog, req); v != "" {
			ev = append(ev, fmt.Sprintf("%s %s's own conformance: %s %s", p.whose, p.prog.ID, req, v))
		}
	}
	r.Evidence = ev
	if side == SideUnclear {
		return
	}
	// Corroboration from the blamed side's own checks, in the line itself.
	blamed := sp
	if side == SideClient {
		blamed = cp
	}
	if v := verdict(blamed, req); v != "" {
		r.Blame += fmt.Sprintf(" [own conformance: %s %s]", req, v)
	}
}

func lastLineText(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return ": " + s
}

func whyText(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// decide reads the scenario's evidence in order of certainty: what the
// server's process did, then the capture's diagnoses, then refusals, then
// what was stored. refServer is this client's outcome against stepkit's
// server, refClient stepkit's client's against this server.
func decide(r *ScenarioResult, refServer, refClient Outcome) (side, req, line string) {
	if r.ServerDied != "" {
		return SideServer, "", "server: " + r.ServerDied
	}
	if r.RelayProblem != "" {
		return SideServer, "CONN-1", "server: stopped accepting connections: " + r.RelayProblem + " (CONN-1)"
	}
	if r.Overflow != "" {
		return r.Overflow, "", fmt.Sprintf("%s: sent more than %d MiB in one scenario of a few MiB; the relay ended the connection", r.Overflow, maxRecorded>>20)
	}
	if r.Connections == 0 {
		return SideClient, "", "client: never connected to 127.0.0.1:1379 (" + r.ClientExit + lastLineText(r.ClientLast) + ")"
	}
	w := r.wire
	if w == nil {
		return SideUnclear, "", "unclear: the capture could not be decoded"
	}
	// Framing: a JSON length that counts characters.
	for _, q := range w.Msgs {
		if !q.CharCount {
			continue
		}
		who := SideClient
		what := fmt.Sprintf("request #%d %s", q.Seq, q.describe())
		if !q.FromClient {
			who, what = SideServer, fmt.Sprintf("the response to #%d %s", q.Answers, q.describe())
		}
		line := fmt.Sprintf("%s: counts JSON lengths in characters (FRAME-2): the header of %s says %d, its JSON is %d bytes of UTF-8",
			who, what, q.JSONLen, q.ActualJSON)
		if q.FromClient {
			line += ", " + answerText(w, q)
		}
		return who, "FRAME-2", line
	}
	// Bytes that are no STEP frame.
	for _, n := range w.notes("undecodable-frame") {
		who, req := SideClient, "FRAME-1"
		if !n.FromClient {
			who = SideServer
		}
		return who, req, fmt.Sprintf("%s: sent bytes that are not a STEP frame (FRAME-1): %s", who, n.Text)
	}
	// Blocks against the plan.
	if side, req, line, ok := blockSizes(w); ok {
		return side, req, line
	}
	// A connection the server never served while another was open.
	if line, ok := stalledConn(w); ok {
		return SideServer, "CONN-3", line
	}
	// An answer that came after the client had given up on it: a slow
	// server or a loaded machine, against a client's own deadline; the
	// capture cannot say which side is wrong.
	for _, a := range w.Msgs {
		if a.FromClient || a.Answers == 0 {
			continue
		}
		c := connOf(w, a.Conn)
		q := requestOf(w, a)
		if c == nil || q == nil || q.Op == string(spec.OpBye) || c.ClientClosed < 0 || a.At <= c.ClientClosed {
			continue // a client closes right after BYE, as it may (BYE-1)
		}
		return SideUnclear, "", fmt.Sprintf("unclear: the client gave up on request #%d %s after %s; the server answered it %s after it was sent (its own deadline against a slow server)",
			q.Seq, q.describe(), seconds(c.ClientClosed-q.At), seconds(a.At-q.At))
	}
	// A request never answered.
	for _, n := range w.notes("request-never-answered") {
		q := unansweredRequest(w, n.Conn)
		what := n.Text
		if q != nil {
			what = fmt.Sprintf("request #%d %s", q.Seq, q.describe())
		}
		waited, wait := "", time.Duration(-1)
		if q != nil {
			if c := connOf(w, q.Conn); c != nil && c.Last > q.At {
				wait = c.Last - q.At
				waited = "; the client gave up after " + seconds(wait)
			}
		}
		if r.ClientTimedOut {
			if wait < unansweredMin {
				// The time limit ended the client, not the server's silence.
				break
			}
			waited = "; the time limit ended the client after it had waited " + seconds(wait)
		}
		if refServer == Pass {
			return SideServer, "REQ-6", fmt.Sprintf("server: never answered %s (REQ-6)%s", what, waited)
		}
		return SideUnclear, "", fmt.Sprintf("unclear: the server never answered %s%s, and the client fails against stepkit's server too", what, waited)
	}
	// A refusal.
	for _, q := range w.Msgs {
		if !q.FromClient || q.Op == string(spec.OpBye) {
			continue
		}
		a := w.answer(q)
		if a == nil || a.Status == int(spec.StatusOK) || a.Status < 0 {
			continue
		}
		what := fmt.Sprintf("request #%d %s with %d %q", q.Seq, q.describe(), a.Status, a.StatusMsg)
		switch {
		case refServer == Pass && refClient != Pass && refClient != "":
			return SideServer, "", fmt.Sprintf("server: refused %s; stepkit's client fails against it too", what)
		case refServer != Pass && refServer != "" && refClient == Pass:
			return SideClient, "", fmt.Sprintf("client: its %s was refused (it fails against stepkit's server too, and stepkit's client passes here)", strings.TrimPrefix(what, "request "))
		}
		return SideUnclear, "", fmt.Sprintf("unclear: the server refused %s; this client against stepkit's server: %s, stepkit's client against this server: %s", what, orUnknown(refServer), orUnknown(refClient))
	}
	if r.ClientTimedOut {
		return SideUnclear, "", fmt.Sprintf("unclear: the time limit ended the client while it was still at work (%s); the last exchanges were answered in time", progressText(w, r.File))
	}
	// The upload as the capture shows it.
	key := r.File
	var plan, last *wireMsg
	sent := map[int64]bool{}
	for _, q := range w.Msgs {
		if q.Key != key {
			continue
		}
		switch {
		case !q.FromClient && q.is(spec.OpSave, spec.TypeFile) && q.Status == int(spec.StatusOK):
			plan = q
		case q.FromClient && q.is(spec.OpUpload, spec.TypeFile):
			sent[q.BlockIndex] = true
		case !q.FromClient && q.is(spec.OpUpload, spec.TypeFile) && q.MD5 != "":
			last = q
		}
	}
	switch {
	case plan == nil:
		return SideUnclear, "", fmt.Sprintf("unclear: no upload plan for %q in the capture (%d messages); client: %s", key, len(w.Msgs), r.ClientExit)
	case last == nil:
		return SideClient, "CLIENT-5", fmt.Sprintf("client: stopped after %d of the plan's %d blocks, every one answered 200 (CLIENT-5)", len(sent), plan.TotalBlock)
	case last.MD5 != r.WantMD5:
		if w.Uploaded[key] == r.WantMD5 {
			return SideServer, "FILE-UPLOAD-2", fmt.Sprintf("server: reported md5 %s for a file whose blocks arrived whole (MD5 %s) (FILE-UPLOAD-2)", last.MD5, r.WantMD5)
		}
		if got := w.Uploaded[key]; got != "" {
			return SideClient, "CLIENT-5", fmt.Sprintf("client: its blocks rebuild a file of MD5 %s, not the file's %s (CLIENT-5)", got, r.WantMD5)
		}
	case r.StoredErr != "" || r.StoredMD5 != r.WantMD5:
		return SideServer, "FILE-GET-1", fmt.Sprintf("server: completed the upload with the right md5, but FILE GET afterwards says %s (FILE-GET-1)", storedText(r))
	}
	if r.DownloadErr != "" || (r.DownloadMD5 != "" && r.DownloadMD5 != r.WantMD5) {
		return blameDownload(r, w, refServer, refClient)
	}
	if r.falseSuccess() {
		return SideClient, "CLIENT-6", "client: reported success for a transfer that did not complete (CLIENT-6)"
	}
	return SideUnclear, "", fmt.Sprintf("unclear: %s; this client against stepkit's server: %s, stepkit's client against this server: %s", storedText(r), orUnknown(refServer), orUnknown(refClient))
}

func orUnknown(o Outcome) string {
	if o == "" {
		return "not run"
	}
	return string(o)
}

func storedText(r *ScenarioResult) string {
	if r.StoredErr != "" {
		return r.StoredErr
	}
	return fmt.Sprintf("%d bytes, MD5 %s", r.StoredSize, r.StoredMD5)
}

// answerText says how the server answered a request.
func answerText(w *wire, q *wireMsg) string {
	a := w.answer(q)
	if a == nil {
		return "left unanswered"
	}
	if a.Status < 0 {
		return "answered without a status"
	}
	return fmt.Sprintf("answered %d %q", a.Status, a.StatusMsg)
}

// blockSizes compares every block with its plan: an UPLOAD block the
// client cut wrong, a DOWNLOAD block the server cut wrong.
func blockSizes(w *wire) (side, req, line string, ok bool) {
	type plan struct{ size, bs, total int64 }
	up, down := map[string]plan{}, map[string]plan{}
	for _, q := range w.Msgs {
		switch {
		case !q.FromClient && q.is(spec.OpSave, spec.TypeFile) && q.Status == int(spec.StatusOK):
			// The size the client announced is the one its blocks follow.
			size := q.Size
			if rq := requestOf(w, q); rq != nil && rq.Size >= 0 {
				size = rq.Size
			}
			up[q.Key] = plan{size, q.BlockSize, q.TotalBlock}
		case !q.FromClient && q.is(spec.OpGet, spec.TypeFile) && q.Status == int(spec.StatusOK):
			down[q.Key] = plan{sizeOf(w, q), q.BlockSize, q.TotalBlock}
		}
		if q.FromClient && q.is(spec.OpUpload, spec.TypeFile) {
			p, planned := up[q.Key]
			if !planned || p.size < 0 || p.bs <= 0 || q.BlockIndex < 0 || q.BlockIndex >= p.total {
				continue
			}
			if want := spec.BlockLen(p.size, p.bs, q.BlockIndex); int64(q.BinLen) != want {
				return SideClient, "CLIENT-1", fmt.Sprintf("client: ignores the plan's block_size %d (CLIENT-1): sent %d-byte blocks, %s",
					p.bs, q.BinLen, refusedText(w, q)), true
			}
		}
		if !q.FromClient && q.is(spec.OpDownload, spec.TypeFile) && q.Status == int(spec.StatusOK) {
			p, planned := down[q.Key]
			if !planned || p.size < 0 || p.bs <= 0 || q.BlockIndex < 0 || q.BlockIndex >= p.total {
				continue
			}
			if want := spec.BlockLen(p.size, p.bs, q.BlockIndex); int64(q.BinLen) != want {
				return SideServer, "FILE-DOWNLOAD-1", fmt.Sprintf("server: sent DOWNLOAD block %d of %d bytes; its own plan (block_size %d) says %d (FILE-DOWNLOAD-1)",
					q.BlockIndex, q.BinLen, p.bs, want), true
			}
		}
	}
	return "", "", "", false
}

func refusedText(w *wire, q *wireMsg) string {
	a := w.answer(q)
	switch {
	case a == nil:
		return "left unanswered"
	case a.Status == int(spec.StatusOK):
		return "accepted 200"
	}
	return fmt.Sprintf("refused %d", a.Status)
}

// requestOf returns the request a response answers.
func requestOf(w *wire, a *wireMsg) *wireMsg {
	for _, q := range w.Msgs {
		if q.FromClient && q.Conn == a.Conn && q.Seq == a.Answers {
			return q
		}
	}
	return nil
}

// sizeOf is the size a plan is about: the response's, else its request's.
func sizeOf(w *wire, m *wireMsg) int64 {
	if m.Size >= 0 || m.FromClient {
		return m.Size
	}
	if q := requestOf(w, m); q != nil {
		return q.Size
	}
	return -1
}

// stalledConn finds a connection the server left unserved while another
// connection of the client was open: its first request was answered
// never, or only once the client had closed the other (a server serving
// one connection at a time takes the next only then), and not within a
// moment.
func stalledConn(w *wire) (string, bool) {
	for _, k := range w.Conns {
		if k.FirstRequest < 0 {
			continue
		}
		until := k.Last // the wait's end: the first response, else the connection's end
		if k.FirstResponse >= 0 {
			until = k.FirstResponse
		}
		if until-k.FirstRequest < stallMin {
			continue
		}
		for _, j := range w.Conns {
			if j == k || j.Responses == 0 || j.First > k.FirstRequest || j.Last < k.FirstRequest {
				continue
			}
			if k.FirstResponse >= 0 && (j.ClientClosed < 0 || k.FirstResponse < j.ClientClosed) {
				continue // answered while the other was still open
			}
			return fmt.Sprintf("server: serves one connection at a time; the client's %s connection waited %s while its %s was open (CONN-3)",
				ordinal(k.ID), seconds(until-k.FirstRequest), ordinal(j.ID)), true
		}
	}
	return "", false
}

// unansweredMin is how long a request must have waited, when the time
// limit ended the client, to count as never answered: a loaded machine
// delays an answer, not by that much.
const unansweredMin = 5 * time.Second

// progressText says how far a transfer got, from the capture.
func progressText(w *wire, key string) string {
	var total int64 = -1
	sent, ok := map[int64]bool{}, 0
	for _, q := range w.Msgs {
		if q.Key != key {
			continue
		}
		switch {
		case !q.FromClient && q.is(spec.OpSave, spec.TypeFile) && q.Status == int(spec.StatusOK):
			total = q.TotalBlock
		case q.FromClient && q.is(spec.OpUpload, spec.TypeFile):
			sent[q.BlockIndex] = true
		case !q.FromClient && q.is(spec.OpUpload, spec.TypeFile) && q.Status == int(spec.StatusOK):
			ok++
		}
	}
	if total < 0 {
		return fmt.Sprintf("%d messages, no upload plan yet", len(w.Msgs))
	}
	return fmt.Sprintf("%d of the plan's %d blocks sent, %d answered 200", len(sent), total, ok)
}

// stallMin is how long an answer must have been held back to count as a
// stall: a server serving connections at once answers in milliseconds.
const stallMin = time.Second

func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("#%d", n)
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func connOf(w *wire, id int) *wireConn {
	for _, c := range w.Conns {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// unansweredRequest is the first request of a connection without an answer.
func unansweredRequest(w *wire, conn int) *wireMsg {
	for _, q := range w.Msgs {
		if q.FromClient && q.Conn == conn && q.Op != string(spec.OpBye) && w.answer(q) == nil {
			return q
		}
	}
	return nil
}

// blameDownload explains a download that did not come back whole.
func blameDownload(r *ScenarioResult, w *wire, refServer, refClient Outcome) (string, string, string) {
	var get *wireMsg
	asked := 0
	for _, q := range w.Msgs {
		if q.FromClient && q.is(spec.OpGet, spec.TypeFile) {
			get = q
		}
		if q.FromClient && q.is(spec.OpDownload, spec.TypeFile) {
			asked++
		}
	}
	if get == nil {
		return SideClient, "CLIENT-1", "client: never downloaded the file back into {dir}: it sent no FILE GET"
	}
	if r.DownloadErr != "" {
		return SideClient, "CLIENT-2", fmt.Sprintf("client: fetched the file (%d DOWNLOAD requests) but wrote %s", asked, strings.TrimPrefix(r.DownloadErr, "no file "))
	}
	return SideUnclear, "", fmt.Sprintf("unclear: the file written into {dir} has MD5 %s, not %s; this client against stepkit's server: %s, stepkit's client against this server: %s",
		r.DownloadMD5, r.WantMD5, orUnknown(refServer), orUnknown(refClient))
}
