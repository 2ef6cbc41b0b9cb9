package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/conformance/judge"
)

// clientOptions are the flags of stepkit conformance --client.
type clientOptions struct {
	template    string
	dir         string
	stdin       string
	env         []string
	timeout     time.Duration
	memory      string
	cpu         time.Duration
	hostNetwork bool
}

func (c *clientOptions) register(f *pflag.FlagSet) {
	f.StringVar(&c.template, "client", "", "judge a client program: its command line, a `TEMPLATE` with {host} {port} {user} {file} {dir} (\"course\": "+judge.CourseTemplate+")")
	f.StringVar(&c.dir, "client-dir", "", "the client's folder, `DIR`, copied afresh for each case (default: the working directory)")
	f.StringVar(&c.stdin, "stdin", "", "give the client this `FILE` on its standard input (default: empty)")
	f.StringArrayVar(&c.env, "client-env", nil, "set `NAME=VALUE` in the client's environment (repeatable)")
	f.DurationVar(&c.timeout, "client-timeout", judge.DefaultTimeout, "the client's time limit in each case")
	f.StringVar(&c.memory, "client-memory", "", "bound the client's memory in each case to `SIZE`, such as 512MiB (default: the sandbox's, 1GiB)")
	f.DurationVar(&c.cpu, "client-cpu", 0, "bound the client's CPU time in each case (default: the sandbox's, 2m)")
	f.BoolVar(&c.hostNetwork, "host-network", false, "run the client on the host network, without namespaces (the judge listens on a free port given through {port}, or on 1379)")
}

// serverOnlyFlags make no sense with --client.
var serverOnlyFlags = []string{"target", "user", "password", "user2", "password2", "token-ttl", "idle-timeout", "max-conns", "quota", "max-file-size", "block-size", "read-timeout", "case-timeout"}

func runClientConformance(ctx context.Context, cmd *cobra.Command, o conformanceOptions, selectors []string) error {
	out := cmd.OutOrStdout()
	for _, name := range serverOnlyFlags {
		if cmd.Flags().Changed(name) {
			return usageErrorf("--%s is for judging servers; it cannot go with --client", name)
		}
	}
	text := o.client.template
	if strings.TrimSpace(text) == "course" {
		text = judge.CourseTemplate
	}
	tmpl, err := judge.ParseTemplate(text)
	if err != nil {
		return usageErrorf("%v", err)
	}
	picked, err := judge.Select(o.labelFilter, selectors)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.list {
		return listClientCases(out, picked)
	}
	if o.client.timeout <= 0 {
		return usageErrorf("--client-timeout must be positive")
	}
	jo := judge.Options{Template: tmpl, Dir: o.client.dir, Timeout: o.client.timeout, LabelFilter: o.labelFilter,
		Selectors: selectors, Strict: o.strict, CPU: o.client.cpu}
	if o.client.memory != "" {
		mem, err := parseBytes(o.client.memory)
		if err != nil || mem < 16<<20 {
			return usageErrorf("--client-memory %q: want a size of at least 16MiB, such as 512MiB or 2GiB", o.client.memory)
		}
		jo.Memory = mem
	}
	if o.client.cpu < 0 || (cmd.Flags().Changed("client-cpu") && o.client.cpu < time.Second) {
		return usageErrorf("--client-cpu %s: want a duration of at least 1s", o.client.cpu)
	}
	if o.client.hostNetwork {
		jo.Isolation = judge.Host
	}
	// --parallel and --serial mean the same as for servers: how many cases
	// run at once (default: the judge's own choice).
	switch {
	case o.serial && cmd.Flags().Changed("parallel") && o.parallel != 1:
		return usageErrorf("--serial and --parallel %d contradict each other", o.parallel)
	case o.serial:
		jo.Parallel = 1
	case cmd.Flags().Changed("parallel"):
		if o.parallel < 1 {
			return usageErrorf("--parallel %d: give 1 or more", o.parallel)
		}
		jo.Parallel = o.parallel
	}
	for _, kv := range o.client.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return usageErrorf("--client-env %q: want NAME=VALUE", kv)
		}
		jo.Env = append(jo.Env, kv)
	}
	if jo.Dir != "" {
		if fi, err := os.Stat(jo.Dir); err != nil {
			return usageErrorf("--client-dir: %s", fileProblem(jo.Dir, err))
		} else if !fi.IsDir() {
			return usageErrorf("--client-dir %s is not a folder", jo.Dir)
		}
	}
	if o.client.stdin != "" {
		b, err := os.ReadFile(o.client.stdin)
		if err != nil {
			return usageErrorf("--stdin: %s", fileProblem(o.client.stdin, err))
		}
		jo.Stdin, jo.StdinName = b, o.client.stdin
	}
	errOut := cmd.ErrOrStderr()
	if isTerminal(errOut) {
		jo.Progress = func(c *judge.Case, oc conformance.Outcome, done, total int) {
			fmt.Fprintf(errOut, "\r\x1b[K[%d/%d] %s %s", done, total, c.ID, oc)
			if done == total {
				fmt.Fprint(errOut, "\r\x1b[K")
			}
		}
	}
	rep, err := judge.Run(ctx, jo)
	if err != nil {
		return err
	}
	if rep.Client != nil && !rep.Client.Isolated {
		fmt.Fprintf(errOut, "stepkit: %s\n", rep.Preflight)
	}
	if err := writeReports(out, o, rep); err != nil {
		return err
	}
	if rep.Conformant {
		return nil
	}
	return withExit(exitFailure, fmt.Errorf("the client is not conformant: %d FAIL, %d ERROR, %d NON-STRICT",
		rep.Counts[conformance.Fail], rep.Counts[conformance.Error], rep.Counts[conformance.NonStrict]))
}

func listClientCases(w io.Writer, cases []*judge.Case) error {
	rows := make([]caseRow, len(cases))
	for i, c := range cases {
		rows[i] = caseRow{c.ID, string(c.Level()), c.Reqs, c.Title}
	}
	return listRows(w, rows, "client cases")
}
