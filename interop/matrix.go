package interop

import (
	"time"
)

// Outcome is a scenario's or a cell's result.
type Outcome string

// Outcomes. A cell fails when any of its scenarios fails; ERROR is the
// grader's own failure (a sandbox that could not be made), never a
// program's.
const (
	Pass          Outcome = "PASS"
	Fail          Outcome = "FAIL"
	NotApplicable Outcome = "N/A"
	Error         Outcome = "ERROR"
)

// Sides a failure is blamed on.
const (
	SideServer  = "server"
	SideClient  = "client"
	SideUnclear = "unclear"
)

// Program is one side of a pair: a student's program or stepkit's own.
type Program struct {
	ID        string `json:"id"`
	Dir       string `json:"dir,omitempty"`
	Run       string `json:"run,omitempty"`
	Stdin     string `json:"-"`
	Reference bool   `json:"reference,omitempty"`
	// Conformance is the program's own conformance run, when there was one.
	Conformance *Conformance `json:"conformance,omitempty"`
	// Passed counts the pairs it passed, of Pairs.
	Passed int `json:"passed"`
	Pairs  int `json:"pairs"`
}

// Conformance is what a program's own conformance checks found.
type Conformance struct {
	Verdict string `json:"verdict"`
	Problem string `json:"problem,omitempty"`
	// Requirements maps each requirement checked to its verdict (PASS,
	// FAIL, ...).
	Requirements map[string]string `json:"requirements"`
	Report       string            `json:"report,omitempty"` // its HTML report, relative to the report folder
}

// ScenarioInfo describes a scenario in the reports.
type ScenarioInfo struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	File  string `json:"file"`
	Size  int    `json:"size"`
}

// Matrix is an interop run: every client against every server.
type Matrix struct {
	Servers   []Program      `json:"servers"` // stepkit's first
	Clients   []Program      `json:"clients"` // stepkit's first
	Scenarios []ScenarioInfo `json:"scenarios"`
	// Cells[s][c] is server s against client c.
	Cells    [][]*Cell     `json:"-"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"-"`
	// Conformance is the time each program's own checks took, alongside
	// the pairs.
	Conformance time.Duration `json:"-"`
	Jobs        int           `json:"jobs"`
}

// Cell is one pair.
type Cell struct {
	Server  string  `json:"server"`
	Client  string  `json:"client"`
	Outcome Outcome `json:"outcome"`
	// Side, Requirement and Blame say who broke what, from the first
	// failing scenario: Blame is one line with its evidence.
	Side        string   `json:"side,omitempty"`
	Requirement string   `json:"requirement,omitempty"`
	Blame       string   `json:"blame,omitempty"`
	Evidence    []string `json:"evidence,omitempty"`
	// ServerProblem says why the server never served (did not start,
	// never listened); Error is the grader's own failure.
	ServerProblem string `json:"server_problem,omitempty"`
	Error         string `json:"error,omitempty"`
	Dir           string `json:"dir"`
	Page          string `json:"page"`
	ServerOutput  string `json:"server_output"`
	// User is the course id the client logged in as (each column its own).
	User string `json:"user"`
	// ServedBefore are the clients the server process served before this
	// cell, in order (a server serves a few cells of its row in turn).
	ServedBefore []string `json:"served_before,omitempty"`
	// Rerun says why the cell ran twice: it did not pass on a server that
	// had served other cells, so it ran again on a fresh one.
	Rerun      string            `json:"rerun,omitempty"`
	Scenarios  []*ScenarioResult `json:"scenarios"`
	Duration   time.Duration     `json:"-"`
	DurationMS int64             `json:"duration_ms"`
}

// ScenarioResult is one scenario of a cell.
type ScenarioResult struct {
	Scenario    string   `json:"scenario"`
	Outcome     Outcome  `json:"outcome"`
	Side        string   `json:"side,omitempty"`
	Requirement string   `json:"requirement,omitempty"`
	Blame       string   `json:"blame,omitempty"`
	Evidence    []string `json:"evidence,omitempty"`
	Error       string   `json:"error,omitempty"`

	File    string `json:"file"`
	Size    int    `json:"size"`
	WantMD5 string `json:"want_md5"`
	// What the server holds, asked after the client ended (FILE GET on a
	// connection of the grader's own).
	StoredMD5  string `json:"stored_md5,omitempty"`
	StoredSize int64  `json:"stored_size"`
	StoredErr  string `json:"stored_error,omitempty"`
	// The file the client downloaded into {dir}.
	DownloadMD5 string `json:"download_md5,omitempty"`
	DownloadErr string `json:"download_error,omitempty"`

	ClientExit     string        `json:"client_exit"`
	ClientExitCode int           `json:"client_exit_code"`
	ClientTimedOut bool          `json:"client_timed_out,omitempty"`
	ClientLast     string        `json:"client_last_line,omitempty"`
	ClientTime     time.Duration `json:"-"`
	ServerDied     string        `json:"server_died,omitempty"`
	RelayProblem   string        `json:"relay_problem,omitempty"`
	// Overflow names the side that sent more than a scenario records.
	Overflow    string   `json:"overflow,omitempty"`
	Connections int      `json:"connections"`
	Messages    int      `json:"messages"`
	Diagnoses   []string `json:"diagnoses,omitempty"`

	Capture      string        `json:"capture,omitempty"`
	Diagram      string        `json:"diagram,omitempty"`
	Dump         string        `json:"dump,omitempty"`
	ClientOutput string        `json:"client_output,omitempty"`
	Duration     time.Duration `json:"-"`

	wire *wire
}

// whole reports whether the file reached the server whole: the server
// reports its MD5 (FILE GET) and, for a download, the client wrote it back.
func (r *ScenarioResult) whole(sc Scenario) bool {
	if r.StoredMD5 != r.WantMD5 || r.StoredSize != int64(r.Size) {
		return false
	}
	if sc.Download && r.DownloadMD5 != r.WantMD5 {
		return false
	}
	return true
}

// falseSuccess reports whether the client exited 0 though the transfer
// failed.
func (r *ScenarioResult) falseSuccess() bool {
	return r.ClientExitCode == 0 && !(r.StoredMD5 == r.WantMD5 && r.StoredSize == int64(r.Size) && (r.DownloadErr == "" && (r.DownloadMD5 == "" || r.DownloadMD5 == r.WantMD5)))
}
