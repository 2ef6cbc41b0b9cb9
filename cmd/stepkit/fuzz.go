package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/fuzz"
	"github.com/stepkit/stepkit/spec"
)

// fuzzTargetOptions say which server a fuzz or replay command talks to.
type fuzzTargetOptions struct {
	target       string
	run          string
	dir          string
	startTimeout time.Duration
	readTimeout  time.Duration
}

func (o *fuzzTargetOptions) register(f interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	f.StringVar(&o.target, "target", "", "the server, HOST:PORT on this machine's loopback (default: start the built-in server)")
	f.StringVar(&o.run, "run", "", "start the server with this shell command, in a sandbox where it listens on 127.0.0.1:1379, restarted after a crash")
	f.StringVar(&o.dir, "dir", ".", "the folder --run runs in (copied afresh at every start)")
	f.DurationVar(&o.startTimeout, "start-timeout", fuzz.DefaultStartTimeout, "how long a --run server may take to listen")
	f.DurationVar(&o.readTimeout, "read-timeout", conformance.DefaultReadTimeout, "how long to wait for each response before confirming a silence")
}

// open returns the target, and a function that stops what was started.
func (o *fuzzTargetOptions) open(ctx context.Context, errOut io.Writer, cpu time.Duration) (fuzz.Target, func(), error) {
	if o.target != "" && o.run != "" {
		return nil, nil, usageErrorf("--target and --run exclude each other")
	}
	if o.readTimeout <= 0 {
		return nil, nil, usageErrorf("--read-timeout must be positive")
	}
	switch {
	case o.run != "":
		dir, err := filepath.Abs(o.dir)
		if err != nil {
			return nil, nil, err
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, nil, usageErrorf("--dir %s: not a folder", o.dir)
		}
		p, err := fuzz.StartProcess(ctx, fuzz.ProcessConfig{Command: o.run, Dir: dir, StartTimeout: o.startTimeout, CPU: cpu})
		if err != nil {
			return nil, nil, withExit(exitNetwork, err)
		}
		return p, func() { p.Close() }, nil
	case o.target != "":
		addr := o.target
		if _, _, err := net.SplitHostPort(addr); err != nil && !strings.Contains(addr, ":") {
			addr = net.JoinHostPort(addr, strconv.Itoa(spec.DefaultPort))
		}
		if err := checkAddr("--target", addr); err != nil {
			return nil, nil, err
		}
		t, err := fuzz.NewRemote(addr)
		if err != nil {
			return nil, nil, usageErrorf("--target %v", err)
		}
		return t, func() {}, nil
	}
	addr, stop, err := startBuiltin(0)
	if err != nil {
		return nil, nil, fmt.Errorf("start the built-in server: %w", err)
	}
	fmt.Fprintf(errOut, "fuzzing the built-in reference server on %s\n", addr)
	t, err := fuzz.NewRemote(addr)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return t, stop, nil
}

func newFuzzCmd() *cobra.Command {
	var (
		t           fuzzTargetOptions
		o           fuzz.Options
		out         string
		noColor     bool
		memoryMiB   int64
		jsonReport  string
		htmlReport  string
		stopAtFirst bool
	)
	cmd := &cobra.Command{
		Use:   "fuzz",
		Short: "Find the inputs that break a STEP server, and write the shortest reproducers",
		Long: `fuzz sends a STEP server sessions built from valid flows (LOGIN, DATA and FILE
SAVE, UPLOAD, GET, DOWNLOAD, DELETE, BYE), mutated at the level of fields
(types, missing and extra fields, boundary numbers, odd keys), frames (lengths
that lie, frames split or merged, stray binary parts, a peer vanishing
mid-frame) and sessions (requests reordered, repeated, skipped, spread over
several connections, half-closed). Inputs that reach a behaviour not seen
before are kept and mutated further. Each input uses users of its own.

A finding is: the server process died or stopped accepting connections; a
request left unanswered (confirmed as the conformance suite confirms silence:
a LOGIN on a new connection is answered meanwhile); an answer that breaks a
MUST of spec/STEP.md (a wrong status, 200 for something refused, a file whose
MD5 or bytes are wrong on read-back, another user's data reachable); the
memory of a --run server growing past --memory-growth. Findings with the same
oracle, operation and status are one finding, each naming the requirement it
breaks.

After exploring for --duration, each finding is shrunk by delta debugging
(connections, then requests, then fields), re-checked on a fresh process when
stepkit started the server (--run), replayed three times to confirm it, and
written into --out as FINDING.json (stepkit replay FINDING.json --target
HOST:PORT) and FINDING.py (python3 FINDING.py HOST PORT), beside report.json
and report.html.

Only servers on this machine are fuzzed: --target must be a loopback address;
--run starts the server in a sandbox of its own (a private network namespace
where it listens on 127.0.0.1:1379), so it can be restarted after a crash.

The exit status is 1 when something was found, 2 for a usage error, 3 when the
server cannot be reached or started.`,
		Example: `  stepkit fuzz --duration 10s                                   # the built-in server
  stepkit fuzz --target 127.0.0.1:1379 --out fuzz-report
  stepkit fuzz --run 'python3 server.py' --dir hw/2362202 --duration 2m --seed 7`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if o.Duration <= 0 || o.ShrinkTime <= 0 {
				return usageErrorf("--duration and --shrink-time must be positive")
			}
			if o.Connections < 1 || o.Connections > 8 {
				return usageErrorf("--connections %d: give 1 to 8", o.Connections)
			}
			if memoryMiB <= 0 {
				return usageErrorf("--memory-growth must be positive")
			}
			o.MemoryBound = memoryMiB << 20
			o.ReadTimeout = t.readTimeout
			o.StopAtFirst = stopAtFirst
			errOut := cmd.ErrOrStderr()
			// The server's CPU time may not end the run before its time.
			target, stop, err := t.open(ctx, errOut, max(2*time.Minute, 2*o.Duration+o.ShrinkTime))
			if err != nil {
				return err
			}
			defer stop()
			o.Target = target
			if isTerminal(errOut) {
				o.Progress = func(p fuzz.Progress) {
					if p.Phase == "exploring" {
						fmt.Fprintf(errOut, "\r\x1b[K%d inputs tried · %d distinct findings · %d behaviours · %v left", p.Inputs, p.Findings, p.Behaviours, p.Left.Round(time.Second))
					} else {
						fmt.Fprintf(errOut, "\r\x1b[K%d inputs tried · %d distinct findings · %s", p.Inputs, p.Findings, p.Phase)
					}
				}
			}
			res, err := fuzz.Run(ctx, o)
			if o.Progress != nil {
				fmt.Fprint(errOut, "\r\x1b[K")
			}
			if res == nil {
				return withExit(exitNetwork, err)
			}
			// Stopped early (an interrupt): what was found so far is
			// reported all the same.
			interrupted := err
			if err := writeFuzzReports(res, out, jsonReport, htmlReport); err != nil {
				return err
			}
			colour := !noColor && os.Getenv("NO_COLOR") == "" && isTerminal(cmd.OutOrStdout())
			if err := res.WriteText(cmd.OutOrStdout(), colour); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reports: %s, %s\n", filepath.Join(out, "report.json"), filepath.Join(out, "report.html"))
			if interrupted != nil {
				return fmt.Errorf("stopped early: %w", interrupted)
			}
			if len(res.Findings) > 0 {
				return withExit(exitFailure, fmt.Errorf("%d finding(s) against %s", len(res.Findings), res.Target))
			}
			return nil
		},
	}
	f := cmd.Flags()
	t.register(f)
	f.StringVar(&out, "out", "fuzz-report", "the folder for the reports and the reproducers")
	f.DurationVar(&o.Duration, "duration", fuzz.DefaultDuration, "how long to explore (shrinking comes after)")
	f.Uint64Var(&o.Seed, "seed", 0, "the seed of the inputs: the same seed against the same server sends the same first inputs (0: a random one, reported)")
	f.IntVar(&o.Connections, "connections", fuzz.DefaultConnections, "the most connections one input opens")
	f.DurationVar(&o.ShrinkTime, "shrink-time", fuzz.DefaultShrinkTime, "how long each finding may be shrunk")
	f.Int64Var(&memoryMiB, "memory-growth", fuzz.DefaultMemoryBound>>20, "MiB a --run server's memory may grow past its start before it is a finding")
	f.StringVar(&jsonReport, "json-report", "", "also write the JSON report to `FILE`")
	f.StringVar(&htmlReport, "html-report", "", "also write the HTML report to `FILE`")
	f.BoolVar(&stopAtFirst, "stop-at-first", false, "stop exploring at the first finding")
	f.BoolVar(&noColor, "no-color", false, "no colour, even on a terminal")
	return cmd
}

// writeFuzzReports writes the reproducers and the reports into out.
func writeFuzzReports(res *fuzz.Result, out, jsonReport, htmlReport string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, f := range res.Findings {
		name := strings.ToLower(fmt.Sprintf("%s-%s", f.Oracle, strings.ReplaceAll(strings.TrimSpace(f.Operation), " ", "-")))
		name = f.ID + "-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '_'
		}, name)
		if err := fuzz.WriteRepro(out, name, f, res.ReadTimeout); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		path  string
		write func(io.Writer) error
	}{
		{filepath.Join(out, "report.json"), res.WriteJSON},
		{filepath.Join(out, "report.html"), res.WriteHTML},
		{jsonReport, res.WriteJSON},
		{htmlReport, res.WriteHTML},
	} {
		if r.path == "" {
			continue
		}
		if err := conformance.WriteFile(r.path, r.write); err != nil {
			return err
		}
	}
	return nil
}

func newReplayCmd() *cobra.Command {
	var t fuzzTargetOptions
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Play a reproducer written by stepkit fuzz and judge the answers again",
		Long: `replay sends the frames of a reproducer that stepkit fuzz wrote (as new users,
so it can be run again and again), prints what the server answered, and judges
the answers as the fuzzer did. The exit status is 1 when the reproducer's
failure shows again, 0 when it does not, 2 for a usage error, 3 when the
server cannot be reached.`,
		Example: `  stepkit replay fuzz-report/F1-silence-file-delete.json --target 127.0.0.1:1379
  stepkit replay fuzz-report/F2-died-file-save.json --run 'python3 server.py' --dir .`,
		Args: exactArgs(1, "one reproducer FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := fuzz.ReadRepro(args[0])
			if err != nil {
				return usageErrorf("%v", err)
			}
			if !cmd.Flags().Changed("read-timeout") && r.ReadTimeoutMS > 0 {
				t.readTimeout = time.Duration(r.ReadTimeoutMS) * time.Millisecond
			}
			target, stop, err := t.open(cmd.Context(), cmd.ErrOrStderr(), 0)
			if err != nil {
				return err
			}
			defer stop()
			res, err := fuzz.Replay(cmd.Context(), r, target, t.readTimeout)
			if err != nil {
				return withExit(exitNetwork, err)
			}
			w := cmd.OutOrStdout()
			for _, a := range res.Answers {
				fmt.Fprintf(w, "%d. %s\n", a.Step, a.Sent)
				switch {
				case a.Answer != "":
					bin := ""
					if a.Binary > 0 {
						bin = fmt.Sprintf(" + %d binary bytes", a.Binary)
					}
					fmt.Fprintf(w, "   -> %s%s\n", a.Answer, bin)
				default:
					fmt.Fprintf(w, "   -> %s %s\n", a.Outcome, a.Detail)
				}
			}
			v := r.Finding
			if res.Shown {
				fmt.Fprintf(w, "FAILURE SHOWN: %s %s %s: %s\n", strings.ToUpper(v.Oracle), v.Requirement, v.Operation, v.Message)
				return withExit(exitFailure, fmt.Errorf("the failure of %s shows again against %s", args[0], target.Addr()))
			}
			fmt.Fprintf(w, "the failure (%s %s %s) did not show\n", v.Oracle, v.Requirement, v.Operation)
			for _, o := range res.Violations {
				fmt.Fprintf(w, "but: %s %s %s: %s\n", strings.ToUpper(o.Oracle), o.Requirement, o.Operation, o.Message)
			}
			return nil
		},
	}
	t.register(cmd.Flags())
	return cmd
}
