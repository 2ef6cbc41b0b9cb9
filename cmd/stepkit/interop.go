package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/grade"
	"github.com/stepkit/stepkit/interop"
)

type interopOptions struct {
	servers, clients            string
	serverRoster, clientRoster  string
	serverRun, clientRun        string
	out                         string
	jobs                        int
	clientTimeout, startTimeout time.Duration
	memory                      string
	cpu                         time.Duration
	scenarios                   []string
	noConformance, noProgress   bool
	freshServers                bool
}

func newInteropCmd() *cobra.Command {
	var o interopOptions
	cmd := &cobra.Command{
		Use:   "interop --servers DIR --clients DIR --out OUT",
		Short: "Run every client of a class against every server, each pair captured and blamed",
		Long: `interop pairs every client of a class with every server of the class, and
stepkit's own server and client with each of them (the first row and the
first column), and writes OUT/interop.html: servers as rows, clients as
columns, each cell coloured by its outcome, with its blame as a tooltip and
a link to its page.

Each pair runs short scenarios: the course flow (a file of 300 KiB and 777
bytes), an upload of about 2 MiB, a non-ASCII file name, and, for a client
whose template has {dir}, a download back into {dir}. A pair passes when
the file reached the server whole (the server reports its MD5 by FILE GET,
and the download wrote it back) and the client claimed no false success.

The server runs in a network namespace of its own on 127.0.0.1:1379, the
client in another, where 127.0.0.1:1379 is a relay that carries each of
its connections to the server and records them: every scenario's traffic
is a pcapng file (open it with stepkit dump or Wireshark with step.lua),
with its decoding, its ladder diagram and both programs' output beside it.
A server process serves up to 8 pairs of its row in turn, each client
logging in as an id of its own (2362202 counting up by column); a pair that
does not pass ends it, and one that failed on a process that had served
others runs again on a fresh one, whose verdict it keeps (--fresh-servers:
a server for every pair).
A failing pair is blamed on the server, the client, or "unclear", in one
line, from the capture's diagnoses, each program's own conformance checks
(run once per program, restricted to the requirements blame names; see
OUT/conformance/) and each program's result against stepkit's own peer.

Templates, rosters and limits are those of stepkit grade: --server-run
(placeholders {port} {dir} {id}, run with /bin/sh -c), --client-run
({host} {port} {user} {file} {dir}; "course" is the course sheet's
command line), and a roster CSV per side (header id,path,run,stdin).
Also OUT/interop.csv, OUT/interop.json (schema: interop.schema.json), and
OUT/servers/ID.html, OUT/clients/ID.html: each program against every peer.

Needs root with bubblewrap and util-linux (network namespaces). The exit
status is 0 when the matrix was made, whatever its cells; 1 when it could
not be; 2 for a usage error.`,
		Example: `  stepkit interop --servers servers/ --clients clients/ --out interop/
  stepkit interop --servers servers/ --clients clients/ --client-run 'python3 client.py --server_ip {host} --id {user} --f {file} --dir {dir}' --out interop/
  stepkit interop --servers servers/ --server-roster servers.csv --clients clients/ --client-roster clients.csv --jobs 8 --out interop/`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInterop(cmd.Context(), cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.servers, "servers", "", "the class's servers: one sub-folder of `DIR` each")
	f.StringVar(&o.clients, "clients", "", "the class's clients: one sub-folder of `DIR` each")
	f.StringVar(&o.serverRoster, "server-roster", "", "roster CSV of the servers (id,path,run,stdin)")
	f.StringVar(&o.clientRoster, "client-roster", "", "roster CSV of the clients (id,path,run,stdin)")
	f.StringVar(&o.serverRun, "server-run", grade.DefaultServerRun, "command template of a server")
	f.StringVar(&o.clientRun, "client-run", grade.DefaultClientRun, "command template of a client (\"course\": the course sheet's)")
	f.StringVar(&o.out, "out", "", "report folder (required)")
	f.IntVar(&o.jobs, "jobs", 0, fmt.Sprintf("pairs run at once (default %d on this machine)", interop.DefaultJobs()))
	f.DurationVar(&o.clientTimeout, "client-timeout", interop.DefaultClientTimeout, "time limit of a client in one scenario")
	f.DurationVar(&o.startTimeout, "start-timeout", interop.DefaultStartTimeout, "how long a server may take to listen")
	f.StringVar(&o.memory, "memory", "1GiB", "memory bound of each program")
	f.DurationVar(&o.cpu, "cpu", 2*time.Minute, "CPU-time bound of each program")
	f.StringSliceVar(&o.scenarios, "scenario", nil, "run only these scenarios (course, multiblock, nonascii, download)")
	f.BoolVar(&o.noConformance, "no-conformance", false, "do not run each program's own conformance checks (blame then rests on the captures and the reference pairs)")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	f.BoolVar(&o.freshServers, "fresh-servers", false, "start a server for every pair, instead of one per segment of up to 8 pairs of its row (slower)")
	return cmd
}

func runInterop(ctx context.Context, cmd *cobra.Command, o interopOptions) error {
	if o.servers == "" || o.clients == "" || o.out == "" {
		return usageErrorf("interop needs --servers DIR, --clients DIR and --out OUT %s", seeHelp(cmd))
	}
	if o.jobs < 0 {
		return usageErrorf("--jobs %d: want 1 or more", o.jobs)
	}
	if o.clientTimeout <= 0 || o.startTimeout <= 0 || o.cpu <= 0 {
		return usageErrorf("--client-timeout, --start-timeout and --cpu must be positive")
	}
	mem, err := parseBytes(o.memory)
	if err != nil || mem < 16<<20 {
		return usageErrorf("--memory %q: want a size of at least 16MiB, such as 512MiB or 2GiB", o.memory)
	}
	side := func(dir, roster string) ([]grade.Submission, error) {
		if roster == "" {
			return grade.Discover(dir)
		}
		f, err := os.Open(roster)
		if err != nil {
			return nil, fmt.Errorf("roster: %v", err)
		}
		defer f.Close()
		return grade.ReadRoster(f, dir)
	}
	servers, err := side(o.servers, o.serverRoster)
	if err != nil {
		return usageErrorf("servers: %v", err)
	}
	clients, err := side(o.clients, o.clientRoster)
	if err != nil {
		return usageErrorf("clients: %v", err)
	}
	for _, c := range clients {
		run := c.Run
		if run == "" {
			run = o.clientRun
		}
		if _, err := interop.ClientTemplate(run); err != nil {
			return usageErrorf("client %s: %v", c.ID, err)
		}
	}
	var scenarios []interop.Scenario
	if len(o.scenarios) > 0 {
		known := map[string]interop.Scenario{}
		var names []string
		for _, s := range interop.Scenarios() {
			known[s.ID] = s
			names = append(names, s.ID)
		}
		for _, id := range o.scenarios {
			s, ok := known[id]
			if !ok {
				return usageErrorf("--scenario %q: want one of %s", id, strings.Join(names, ", "))
			}
			scenarios = append(scenarios, s)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the stepkit binary: %w", err)
	}
	opts := interop.Options{Servers: servers, Clients: clients, ServerRun: o.serverRun, ClientRun: o.clientRun,
		Jobs: o.jobs, Out: o.out, Scenarios: scenarios, ClientTimeout: o.clientTimeout, StartTimeout: o.startTimeout,
		Memory: mem, CPU: o.cpu, Conformance: !o.noConformance, Stepkit: exe, FreshServers: o.freshServers}
	if opts.Jobs == 0 {
		opts.Jobs = interop.DefaultJobs()
	}
	errOut := cmd.ErrOrStderr()
	pairs := (len(servers) + 1) * (len(clients) + 1)
	p := newInteropProgress(errOut, pairs, !o.noProgress && isTerminal(errOut))
	opts.Progress = p.done
	opts.Phase = p.phase
	fmt.Fprintf(errOut, "%d servers × %d clients with stepkit's own: %d pairs, %d at once\n", len(servers), len(clients), pairs, opts.Jobs)
	m, err := interop.Run(ctx, opts)
	p.finish()
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, row := range m.Cells {
		for _, c := range row {
			k := string(c.Outcome)
			if c.Outcome == interop.Fail {
				k += " (" + c.Side + ")"
			}
			counts[k]++
		}
	}
	var parts []string
	for _, k := range []string{"PASS", "FAIL (server)", "FAIL (client)", "FAIL (unclear)", "ERROR"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	for _, row := range m.Cells {
		for _, c := range row {
			if c.Outcome != interop.Pass {
				fmt.Fprintf(cmd.OutOrStdout(), "%s × %s: %s — %s\n", c.Server, c.Client, c.Outcome, c.Blame)
			}
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d pairs in %.1fs (each program's own checks alongside, for %.1fs): %s\n%s\n", pairs, m.Duration.Seconds(), m.Conformance.Seconds(), strings.Join(parts, ", "),
		filepath.Join(o.out, "interop.html"))
	return nil
}

// interopProgress prints the phases and a line per failing pair, and on
// a terminal a bar with the time left.
type interopProgress struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	bar   *progressbar.ProgressBar
	show  bool
}

func newInteropProgress(w io.Writer, total int, bar bool) *interopProgress {
	return &interopProgress{w: w, total: total, show: bar}
}

func (p *interopProgress) phase(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch name {
	case "conformance":
		fmt.Fprintln(p.w, "each program's own conformance checks, once, alongside the pairs")
	case "matrix":
		fmt.Fprintln(p.w, "the pairs")
		if p.show {
			p.bar = progressbar.NewOptions(p.total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription("pairs"),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionShowElapsedTimeOnFinish(),
				progressbar.OptionFullWidth(),
				progressbar.OptionClearOnFinish(),
			)
			_ = p.bar.RenderBlank()
		}
	}
}

func (p *interopProgress) done(c *interop.Cell, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.Outcome != interop.Pass {
		if p.bar != nil {
			_ = p.bar.Clear()
		}
		line := fmt.Sprintf("[%d/%d] %s × %s: %s", done, total, c.Server, c.Client, c.Outcome)
		if c.Error != "" {
			line += " — " + c.Error
		}
		fmt.Fprintln(p.w, line)
	}
	if p.bar != nil {
		_ = p.bar.Add(1)
	}
}

func (p *interopProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
