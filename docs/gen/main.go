// Command gen writes docs/reliability.md from the rows the robustness tests
// record (package internal/reliability):
//
//	rows=$(mktemp)
//	STEPKIT_RELIABILITY=$rows go test ./...
//	go run ./docs/gen -in $rows -out docs/reliability.md
//
// The document holds only what the tests fix (inputs, counts, outcomes),
// so the same tests always write the same document; CI checks that the
// committed one is what they write.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/stepkit/stepkit/internal/reliability"
)

func main() {
	in := flag.String("in", "", "JSON lines written by the tests (required)")
	out := flag.String("out", "docs/reliability.md", "the Markdown document to write")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "gen: -in is required")
		os.Exit(2)
	}
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	var b bytes.Buffer
	write(&b, rows)
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// read parses and checks the rows, dropping exact duplicates (a test run
// twice records twice).
func read(r io.Reader) ([]reliability.Row, error) {
	var rows []reliability.Row
	seen := make(map[reliability.Row]bool)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row reliability.Row
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if err := row.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !seen[row] {
			seen[row] = true
			rows = append(rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no rows: were the tests run with %s set?", reliability.EnvVar)
	}
	return rows, nil
}

var areas = []struct{ key, title, intro string }{
	{"server", "Server (`stepkit serve`)", "Hostile clients, a full disk and arbitrary byte streams, against the server over TCP on 127.0.0.1 (or net.Pipe)."},
	{"client", "Client (`stepkit` commands, package refclient)", "A rate-limited server, stale journals and bytes changed on the way."},
	{"decoder", "Capture decoder (`stepkit dump`)", "Captures cut short, STEP on other ports, captures without STEP, long transfers."},
}

func write(w io.Writer, rows []reliability.Row) {
	fmt.Fprint(w, `# Reliability: what was tried, and what was lost

This page is written by `+"`go run ./docs/gen`"+` from the results of stepkit's tests;
do not edit it by hand. Each row is a fault or a hostile input a test tried,
how many times, what stepkit did, and what was lost. The counts are those the
tests fix, so the page is the same on every run; CI runs the tests, writes the
page again and fails if it differs from this one.

To write it again:

`+"```sh"+`
rows=$(mktemp)
STEPKIT_RELIABILITY=$rows go test ./...
go run ./docs/gen -in $rows -out docs/reliability.md
`+"```"+`

The tests that need root (a small tmpfs and a small ext4 image for the full
disk) or tools (tshark, chromium) run in CI; elsewhere they are skipped and
their rows are missing.

`)
	var trials, kinds int
	for _, r := range rows {
		trials += r.Times
		kinds++
	}
	fmt.Fprintf(w, "In all: %d faults and hostile inputs, tried %d times.\n", kinds, trials)
	for _, a := range areas {
		var sel []reliability.Row
		for _, r := range rows {
			if r.Area == a.key {
				sel = append(sel, r)
			}
		}
		if len(sel) == 0 {
			continue
		}
		sort.SliceStable(sel, func(i, j int) bool {
			if sel[i].Test != sel[j].Test {
				return sel[i].Test < sel[j].Test
			}
			return sel[i].Input < sel[j].Input
		})
		fmt.Fprintf(w, "\n## %s\n\n%s\n\n", a.title, a.intro)
		fmt.Fprintln(w, "| fault or hostile input | times | what stepkit did | lost | test |")
		fmt.Fprintln(w, "|---|---:|---|---|---|")
		for _, r := range sel {
			fmt.Fprintf(w, "| %s | %d | %s | %s | `%s` |\n", cell(r.Input), r.Times, cell(r.Outcome), cell(r.Lost), r.Test)
		}
	}
	for _, r := range rows {
		known := false
		for _, a := range areas {
			known = known || r.Area == a.key
		}
		if !known {
			fmt.Fprintf(w, "\nUnknown area %q in row %q of %s.\n", r.Area, r.Input, r.Test)
		}
	}
}

// cell makes text safe in a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
