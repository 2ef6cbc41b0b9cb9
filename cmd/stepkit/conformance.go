package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// conformanceOptions are the flags of stepkit conformance.
type conformanceOptions struct {
	cfg         conformance.Config
	labelFilter string
	list        bool
	strict      bool
	verbose     bool
	noColor     bool
	junit       string
	jsonReport  string
	htmlReport  string
	client      clientOptions
	parallel    int
	serial      bool
}

// builtinTimeout is the built-in server's idle and mid-frame timeout in a
// conformance run: short, so that ROBUST-5 can be checked in a second.
const builtinTimeout = 1500 * time.Millisecond

func newConformanceCmd() *cobra.Command {
	var o conformanceOptions
	cmd := &cobra.Command{
		Use:   "conformance [SELECTOR...]",
		Short: "Check a STEP server against spec/STEP.md, requirement by requirement",
		Long: `conformance runs the STEP conformance suite against a server: one case per
requirement of spec/STEP.md (or several), each reported as

  PASS           the requirement holds
  FAIL           a MUST is broken
  NON-STRICT     a SHOULD is broken (for example another 4xx than the preferred
                 code); the server is still conformant
  INFORMATIONAL  behaviour the spec leaves open (a MAY), or a case that does not
                 apply to this run
  ERROR          the case could not run (for example the server is unreachable)

Every case uses fresh connections, random users and random keys, and deletes
what it created, so cases run side by side (--parallel, 16 by default); a
server that serves one connection at a time is found at preflight and
checked one case at a time, as --serial does. A read that gets nothing
within --read-timeout is confirmed before it counts as silence: a LOGIN is
sent on a new connection, and a server that answers it but not the request
is silent, while a slow one answers the request first.

Without --target the built-in reference server is started on 127.0.0.1 with
a temporary root, so a first run shows a full green report.

SELECTORs pick cases by requirement ID (FILE-UPLOAD-7), case ID
(FILE-UPLOAD-6.2) or section prefix (FILE-UPLOAD, FILE, DATA); --label-filter
takes a Ginkgo label expression over the labels req:ID, sec:PREFIX and
level:MUST|SHOULD|MAY.

The exit status is 1 when a MUST failed or a case errored (--strict: when any
case is neither PASS nor INFORMATIONAL), 2 for a usage error or when nothing
matches the selection, 3 when the server cannot be reached at all.

--client TEMPLATE judges a client program instead: stepkit plays the server,
runs the client once per client case (in a network namespace of its own,
the judge on 127.0.0.1:1379) and judges what reached it. --list and the
selectors then name client cases. See "Judging a student's client" in the
README and conformance/README.md.`,
		Example: `  stepkit conformance                                  # the built-in server
  stepkit conformance --target 127.0.0.1:1379          # another server
  stepkit conformance --target lab-pc-07:1379 FILE-UPLOAD LOGIN-4
  stepkit conformance --label-filter 'level:MUST && !sec:ROBUST'
  stepkit conformance --list
  stepkit conformance --client 'python3 client.py --server_ip {host} --id {user} --f {file}' --client-dir hw/2362202
  stepkit conformance --target host:1379 --junit-report out/junit.xml \
      --json-report out/report.json --html-report out/report.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConformance(cmd.Context(), cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.Target, "target", "", "server to check, host[:port] (port 1379 when omitted; default: start the built-in server)")
	f.DurationVar(&o.cfg.ReadTimeout, "read-timeout", conformance.DefaultReadTimeout, "how long to wait for each response")
	f.DurationVar(&o.cfg.CaseTimeout, "case-timeout", conformance.DefaultCaseTimeout, "how long a whole case may take")
	f.IntVar(&o.parallel, "parallel", conformance.DefaultParallel, "how many cases run at once (a server serving one connection at a time is checked one case at a time anyway)")
	f.BoolVar(&o.serial, "serial", false, "run one case at a time (the same as --parallel 1)")
	f.StringVar(&o.labelFilter, "label-filter", "", "Ginkgo label filter over req:ID, sec:PREFIX, level:LEVEL")
	f.BoolVar(&o.list, "list", false, "list the selected cases without running them")
	f.BoolVar(&o.strict, "strict", false, "treat NON-STRICT outcomes as failures")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print the wire exchange of every case that did not pass")
	f.BoolVar(&o.noColor, "no-color", false, "no colour, even on a terminal")
	f.StringVar(&o.junit, "junit-report", "", "write a JUnit XML report to `FILE`")
	f.StringVar(&o.jsonReport, "json-report", "", "write the JSON report to `FILE`")
	f.StringVar(&o.htmlReport, "html-report", "", "write a self-contained HTML report to `FILE`")
	f.StringVar(&o.cfg.User, "user", os.Getenv("STEPKIT_USER"), "log in as this user (default: random users under the course login rule) [$STEPKIT_USER]")
	f.StringVar(&o.cfg.Password, "password", os.Getenv("STEPKIT_PASSWORD"), "password of --user [$STEPKIT_PASSWORD]")
	f.StringVar(&o.cfg.User2, "user2", os.Getenv("STEPKIT_USER2"), "second user, for the isolation cases [$STEPKIT_USER2]")
	f.StringVar(&o.cfg.Password2, "password2", os.Getenv("STEPKIT_PASSWORD2"), "password of --user2 [$STEPKIT_PASSWORD2]")
	f.DurationVar(&o.cfg.TokenTTL, "token-ttl", 0, "the server's token lifetime, to check that expired tokens are refused (TOKEN-7)")
	f.DurationVar(&o.cfg.IdleTimeout, "idle-timeout", 0, "the server's idle/stall timeout, to check that it closes stalled connections (ROBUST-5)")
	f.IntVar(&o.cfg.MaxConns, "max-conns", 0, "the server's connection limit, to check its 503 answer (EXT-3)")
	f.Int64Var(&o.cfg.Quota, "quota", 0, "the server's per-user quota in bytes, to check its 413 answer (EXT-1)")
	f.Int64Var(&o.cfg.MaxFileSize, "max-file-size", 0, "the largest file size the server accepts: FILE-SAVE-10 then expects one byte more refused (unset: 2^32 + 1 is planned, and its acceptance is informational)")
	f.Int64Var(&o.cfg.BlockSize, "block-size", 0, "the block_size the server is configured to plan with, when not 20480 (FILE-SAVE-11)")
	o.client.register(f)
	return cmd
}

func runConformance(ctx context.Context, cmd *cobra.Command, o conformanceOptions, selectors []string) error {
	out := cmd.OutOrStdout()
	if cmd.Flags().Changed("client") {
		return runClientConformance(ctx, cmd, o, selectors)
	}
	picked, err := conformance.Select(o.labelFilter, selectors)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.list {
		return listCases(out, picked)
	}
	if o.cfg.ReadTimeout <= 0 || o.cfg.CaseTimeout <= 0 {
		return usageErrorf("--read-timeout and --case-timeout must be positive")
	}
	if o.cfg.BlockSize < 0 || o.cfg.BlockSize > spec.MaxBlockSize {
		return usageErrorf("--block-size %d is outside 1..%d", o.cfg.BlockSize, spec.MaxBlockSize)
	}
	if o.parallel < 1 {
		return usageErrorf("--parallel %d: give 1 or more", o.parallel)
	}
	if o.serial {
		if cmd.Flags().Changed("parallel") && o.parallel != 1 {
			return usageErrorf("--serial and --parallel %d contradict each other", o.parallel)
		}
		o.parallel = 1
	}

	if o.cfg.Target == "" {
		addr, stop, err := startBuiltin(int(o.cfg.BlockSize))
		if err != nil {
			return fmt.Errorf("start the built-in server: %w", err)
		}
		defer stop()
		o.cfg.Target = addr
		if o.cfg.IdleTimeout == 0 {
			o.cfg.IdleTimeout = builtinTimeout
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "checking the built-in reference server on %s\n", addr)
	}
	if _, _, err := net.SplitHostPort(o.cfg.Target); err != nil && !strings.Contains(o.cfg.Target, ":") {
		// A bare host: the course's port.
		o.cfg.Target = net.JoinHostPort(o.cfg.Target, strconv.Itoa(spec.DefaultPort))
	}
	if err := checkAddr("--target", o.cfg.Target); err != nil {
		return err
	}
	if err := o.cfg.Validate(); err != nil {
		return usageErrorf("%v", err)
	}

	opts := conformance.Options{Config: o.cfg, Selectors: selectors, LabelFilter: o.labelFilter, Strict: o.strict, Parallel: o.parallel}
	if errOut := cmd.ErrOrStderr(); isTerminal(errOut) {
		// A progress line, so that a run against a slow server shows life.
		opts.Progress = func(c *conformance.Case, oc conformance.Outcome, done, total int) {
			fmt.Fprintf(errOut, "\r\x1b[K[%d/%d] %s %s", done, total, c.ID, oc)
			if done == total {
				fmt.Fprint(errOut, "\r\x1b[K")
			}
		}
	}
	rep, err := conformance.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := writeReports(out, o, rep); err != nil {
		return err
	}
	if rep.Conformant {
		return nil
	}
	if rep.Counts[conformance.Error] == len(rep.Cases) && strings.HasPrefix(rep.Preflight, "cannot connect") {
		return withExit(exitNetwork, fmt.Errorf("%s cannot be reached: %s", o.cfg.Target, strings.TrimPrefix(rep.Preflight, "cannot connect: ")))
	}
	return withExit(exitFailure, fmt.Errorf("%s is not conformant: %d FAIL, %d ERROR, %d NON-STRICT",
		o.cfg.Target, rep.Counts[conformance.Fail], rep.Counts[conformance.Error], rep.Counts[conformance.NonStrict]))
}

func listCases(w io.Writer, cases []*conformance.Case) error {
	rows := make([]caseRow, len(cases))
	for i, c := range cases {
		rows[i] = caseRow{c.ID, string(c.Level()), c.Reqs, c.Title}
	}
	return listRows(w, rows, "cases")
}

// caseRow is a line of --list: a server case or a client case.
type caseRow struct {
	id, level string
	reqs      []string
	title     string
}

// listRows prints the cases of --list as a table, then how many there
// are, as "N noun".
func listRows(w io.Writer, rows []caseRow, noun string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tLEVEL\tREQUIREMENTS\tWHAT IT CHECKS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.id, r.level, strings.Join(r.reqs, ","), r.title)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d %s\n", len(rows), noun)
	return err
}

// startBuiltin starts the reference server on 127.0.0.1 at a free port
// with a temporary root and the given block size (0: the default), and
// returns its address and a stop function that shuts it down and removes
// the root.
func startBuiltin(blockSize int) (string, func(), error) {
	root, err := os.MkdirTemp("", "stepkit-conformance-")
	if err != nil {
		return "", nil, err
	}
	srv, err := refserver.New(refserver.Config{Root: root, BlockSize: blockSize, ReadTimeout: builtinTimeout, IdleTimeout: builtinTimeout})
	if err != nil {
		os.RemoveAll(root)
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		os.RemoveAll(root)
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil && !errors.Is(err, refserver.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "stepkit: built-in server:", err)
		}
		os.RemoveAll(root)
	}
	return l.Addr().String(), stop, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// writeReports prints rep on out and writes the report files o asks for.
func writeReports(out io.Writer, o conformanceOptions, rep *conformance.Report) error {
	colour := !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(out)
	if err := rep.WriteText(out, colour, o.verbose); err != nil {
		return err
	}
	for _, r := range []struct {
		path  string
		write func(io.Writer) error
	}{{o.junit, rep.WriteJUnit}, {o.jsonReport, rep.WriteJSON}, {o.htmlReport, rep.WriteHTML}} {
		if r.path == "" {
			continue
		}
		if err := conformance.WriteFile(r.path, r.write); err != nil {
			return err
		}
	}
	return nil
}
