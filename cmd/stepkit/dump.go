package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

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

Link types: Ethernet, Linux cooked v1/v2 (tcpdump -i any), BSD loopback,
raw IP; IPv4 and IPv6.`,
		Example: `  stepkit dump session.pcapng
  tcpdump -i lo -w - port 1379 | stepkit dump -
  stepkit dump --summary --extract out/ capture.pcap
  stepkit dump --json -v capture.pcap | jq .
  stepkit dump --diagram ladder.html capture.pcap
  stepkit dump --any-port capture.pcap         # STEP on another port`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDump(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.port, "port", spec.DefaultPort, "TCP port of the STEP server")
	fl.BoolVar(&f.anyPort, "any-port", false, "also decode connections on other ports whose bytes look like STEP")
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
	if name != "-" {
		fh, err := os.Open(name)
		if err != nil {
			return withExit(exitFailure, fmt.Errorf("open capture: %w", err))
		}
		defer fh.Close()
		in = fh
	}
	if f.extract != "" {
		if err := os.MkdirAll(f.extract, 0o755); err != nil {
			return withExit(exitFailure, fmt.Errorf("extract directory: %w", err))
		}
	}

	out := cmd.OutOrStdout()
	var handlers stepdump.Multi
	var text *stepdump.TextWriter
	var js *stepdump.JSONWriter
	if f.json {
		js = stepdump.NewJSONWriter(out)
		js.Verbose = f.verbose
		js.Quiet = f.summary
		handlers = append(handlers, js)
	} else {
		text = stepdump.NewTextWriter(out)
		text.Color = color
		text.Verbose = f.verbose
		text.Quiet = f.summary
		handlers = append(handlers, text)
	}
	coll := &stepdump.Collector{}
	handlers = append(handlers, coll)
	var dia *stepdump.Diagram
	if f.diagram != "" {
		dia = stepdump.NewDiagram(filepath.Base(name))
		handlers = append(handlers, dia)
	}
	opts := stepdump.Options{Port: f.port, AnyPort: f.anyPort, HashBinary: f.verbose, ExtractDir: f.extract}
	st, err := stepdump.Decode(cmd.Context(), in, opts, handlers)
	if err != nil {
		if text != nil {
			text.Flush()
		}
		if js != nil {
			js.Flush()
		}
		return withExit(exitFailure, fmt.Errorf("%s: %w", name, err))
	}
	conns := coll.Sorted()
	mismatch := 0
	if js != nil {
		if f.summary {
			js.Summary(conns)
		}
		js.Extracted(st.Extracted)
		if err := js.Flush(); err != nil {
			return withExit(exitFailure, err)
		}
	} else {
		if f.summary {
			text.Summary(conns, st)
		}
		if err := text.Flush(); err != nil {
			return withExit(exitFailure, err)
		}
	}
	for _, x := range st.Extracted {
		if x.MD5 != "" && x.Announced != "" && !x.Verified {
			mismatch++
		}
		if f.extract != "" && js == nil {
			fmt.Fprintln(out, extractLine(x))
		}
	}
	if dia != nil {
		var b bytes.Buffer
		if err := dia.WriteHTML(&b); err != nil {
			return withExit(exitFailure, err)
		}
		if err := os.WriteFile(f.diagram, b.Bytes(), 0o644); err != nil {
			return withExit(exitFailure, fmt.Errorf("write diagram: %w", err))
		}
	}
	if mismatch > 0 {
		return withExit(exitMismatch, fmt.Errorf("%d extracted file(s) do not match the MD5 the server announced", mismatch))
	}
	return nil
}

func extractLine(x stepdump.Extracted) string {
	dir := "downloaded"
	if x.Upload {
		dir = "uploaded"
	}
	s := fmt.Sprintf("extract: %s %q (user %s) -> %s: %d of %d blocks", dir, x.Key, x.User, x.Path, x.Blocks, x.Total)
	switch {
	case len(x.Missing) > 0:
		s += fmt.Sprintf(", %d block range(s) missing from the capture", len(x.Missing))
	case x.Verified:
		s += ", MD5 " + x.MD5 + " matches the server's"
	case x.Announced == "":
		s += ", MD5 " + x.MD5 + " (the server announced none)"
	default:
		s += ", MD5 " + x.MD5 + " DIFFERS from the server's " + x.Announced
	}
	return s
}
