package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump"
)

type dumpFlags struct {
	port     int
	anyPort  bool
	json     bool
	summary  bool
	verbose  bool
	extract  string
	diagram  string
	graphs   string
	color    string
	iface    string
	write    string
	count    int64
	duration time.Duration
}

func newDumpCmd() *cobra.Command {
	var f dumpFlags
	cmd := &cobra.Command{
		Use:   "dump [CAPTURE]",
		Short: "Decode the STEP conversations of a pcap or pcapng capture",
		Long: `dump reads a pcap or pcapng capture (a file, or standard input when CAPTURE
is "-" or absent), reassembles its TCP connections and prints every STEP
message: time, packet, connection, direction, operation, type, status, key,
block index and sizes, with each response paired to its request and the
latency between them. It diagnoses the classic mistakes (a JSON length that
counts characters, responses without requests, requests never answered,
blocks of the wrong size, uploads never completed) and says where the
capture itself is damaged (lost or truncated segments, a late start).

STEP is looked for on port 1379 and on every other TCP connection that
starts as STEP does (a header of plausible lengths followed by '{'); the
ports found besides 1379 are named. --port N decodes port N alone.

Link types: Ethernet, Linux cooked v1/v2 (tcpdump -i any), BSD loopback,
raw IP; IPv4 and IPv6.

-i IFACE captures live on a loopback or Ethernet interface through a Linux
packet socket (no libpcap), printing each message as it is decoded; the
kernel keeps TCP packets only, and with --port those of that port alone.
It ends after --count packets, after --duration, or at Ctrl-C, with the
summary, and says on standard error how many packets were captured and
how many the kernel dropped. It needs root or CAP_NET_RAW.`,
		Example: `  stepkit dump session.pcapng
  stepkit dump -i lo                           # live, until Ctrl-C
  stepkit dump -i eth0 --port 1379 -w s.pcapng --duration 1m
  tcpdump -i lo -U -w - port 1379 | stepkit dump -
  stepkit dump --summary --extract out/ capture.pcap
  stepkit dump --json -v capture.pcap | jq .
  stepkit dump --diagram ladder.html capture.pcap
  stepkit dump --summary --graphs time.html capture.pcap
  stepkit dump --port 8000 capture.pcap        # port 8000 alone`,
		Args: maxArgs(1, "one capture"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDump(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.port, "port", spec.DefaultPort, "decode this server port alone (default: 1379, and every other port whose connections start like STEP)")
	fl.BoolVar(&f.anyPort, "any-port", false, "with --port, also decode other ports whose connections start like STEP (the default without --port)")
	fl.BoolVar(&f.json, "json", false, "write JSON lines instead of text")
	fl.BoolVar(&f.summary, "summary", false, "print a summary per connection instead of every message (warnings and errors are kept)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show each message's whole JSON and its binary's length and MD5")
	fl.StringVar(&f.extract, "extract", "", "write every file uploaded or downloaded to `DIR`, rebuilt from its blocks and checked against the server's MD5")
	fl.StringVar(&f.diagram, "diagram", "", "write a ladder diagram of each connection to `FILE` (self-contained HTML/SVG)")
	fl.StringVar(&f.graphs, "graphs", "", "write graphs of each connection over time to `FILE` (self-contained HTML/SVG): requests sent and answered, bytes per second, latency")
	fl.StringVar(&f.color, "color", "auto", "colour the text output: auto (on a terminal), always, never")
	fl.StringVarP(&f.iface, "interface", "i", "", "capture live on `IFACE` (lo, eth0: loopback or Ethernet) instead of reading a file; needs root or CAP_NET_RAW")
	fl.StringVarP(&f.write, "write", "w", "", "with -i, also save the packets captured to `FILE` (pcapng)")
	fl.Int64VarP(&f.count, "count", "c", 0, "with -i, stop after `N` packets")
	fl.DurationVar(&f.duration, "duration", 0, "with -i, stop after this long (e.g. 30s); Ctrl-C stops too")
	return cmd
}

func runDump(cmd *cobra.Command, args []string, f dumpFlags) error {
	if f.port <= 0 || f.port > 65535 {
		return usageErrorf("--port %d is not a TCP port", f.port)
	}
	color := false
	switch f.color {
	case "auto":
		if o, ok := cmd.OutOrStdout().(*os.File); ok {
			color = term.IsTerminal(int(o.Fd()))
		}
	case "always":
		color = true
	case "never":
	default:
		return usageErrorf("--color must be auto, always or never, not %q", f.color)
	}
	if f.iface != "" {
		return runLiveDump(cmd, args, f, color)
	}
	for _, l := range []string{"write", "count", "duration"} {
		if cmd.Flags().Changed(l) {
			return usageErrorf("--%s goes with a live capture (-i IFACE) %s", l, seeHelp(cmd))
		}
	}
	name := "-"
	if len(args) == 1 {
		name = args[0]
	}
	var in io.Reader = cmd.InOrStdin()
	live := false
	if name == "-" {
		if in == io.Reader(os.Stdin) {
			if term.IsTerminal(int(os.Stdin.Fd())) {
				// Nothing would ever come: say so rather than wait.
				return usageErrorf("dump reads a capture file, or standard input from a pipe (tcpdump -U -w - | stepkit dump -) %s", seeHelp(cmd))
			}
			// A pipe from a running tcpdump: show each message as it comes.
			if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				live = true
			}
		}
	} else {
		fh, err := os.Open(name)
		if err != nil {
			return withExit(exitFailure, fmt.Errorf("open capture: %w", err))
		}
		defer fh.Close()
		if fi, err := fh.Stat(); err == nil && fi.IsDir() {
			return withExit(exitFailure, fmt.Errorf("%s is a directory, not a capture", name))
		}
		in = fh
	}
	only := cmd.Flags().Changed("port") && !f.anyPort
	cfg := stepdump.Config{Name: name, Port: f.port, OnlyPort: only, JSON: f.json, Summary: f.summary,
		Verbose: f.verbose, Color: color, Extract: f.extract, Diagram: f.diagram, Graphs: f.graphs, LineBuffered: live}
	res, err := stepdump.Run(cmd.Context(), in, cmd.OutOrStdout(), cfg)
	if err != nil {
		return withExit(exitFailure, fmt.Errorf("%s: %w", name, err))
	}
	if res.Mismatched > 0 {
		return withExit(exitMismatch, fmt.Errorf("%d extracted file(s) do not match the MD5 the server announced", res.Mismatched))
	}
	return nil
}

func runLiveDump(cmd *cobra.Command, args []string, f dumpFlags, color bool) error {
	if len(args) > 0 {
		return usageErrorf("-i captures live: give no capture file as well %s", seeHelp(cmd))
	}
	if f.count < 0 || f.duration < 0 {
		return usageErrorf("--count and --duration must not be negative")
	}
	only := cmd.Flags().Changed("port") && !f.anyPort
	cfg := stepdump.Config{Name: f.iface, Port: f.port, OnlyPort: only, JSON: f.json, Summary: f.summary,
		Verbose: f.verbose, Color: color, Extract: f.extract, Diagram: f.diagram, Graphs: f.graphs,
		Interface: f.iface, Count: f.count, Duration: f.duration, Save: f.write}
	res, err := stepdump.Run(cmd.Context(), nil, cmd.OutOrStdout(), cfg)
	if err != nil {
		if errors.Is(err, stepdump.ErrNoPrivilege) {
			return withExit(exitFailure, err)
		}
		return withExit(exitFailure, fmt.Errorf("%s: %w", f.iface, err))
	}
	if l := res.Stats.Live; l != nil {
		// As tshark does, on standard error so that the output stays clean.
		fmt.Fprintf(cmd.ErrOrStderr(), "%d %s captured, %d dropped by the kernel\n",
			l.Captured, pluralWord(l.Captured, "packet", "packets"), l.Dropped)
	}
	if res.Mismatched > 0 {
		return withExit(exitMismatch, fmt.Errorf("%d extracted file(s) do not match the MD5 the server announced", res.Mismatched))
	}
	return nil
}

func pluralWord(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
