package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump"
)

type dumpFlags struct {
	port    int
	anyPort bool
	json    bool
	summary bool
	verbose bool
	extract string
	diagram string
	color   string
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
raw IP; IPv4 and IPv6.`,
		Example: `  stepkit dump session.pcapng
  tcpdump -i lo -U -w - port 1379 | stepkit dump -
  stepkit dump --summary --extract out/ capture.pcap
  stepkit dump --json -v capture.pcap | jq .
  stepkit dump --diagram ladder.html capture.pcap
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
	fl.StringVar(&f.color, "color", "auto", "colour the text output: auto (on a terminal), always, never")
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
		Verbose: f.verbose, Color: color, Extract: f.extract, Diagram: f.diagram, LineBuffered: live}
	res, err := stepdump.Run(cmd.Context(), in, cmd.OutOrStdout(), cfg)
	if err != nil {
		return withExit(exitFailure, fmt.Errorf("%s: %w", name, err))
	}
	if res.Mismatched > 0 {
		return withExit(exitMismatch, fmt.Errorf("%d extracted file(s) do not match the MD5 the server announced", res.Mismatched))
	}
	return nil
}
