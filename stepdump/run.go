package stepdump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Config is what the dump command asks for.
type Config struct {
	Name     string // capture name, for the diagram's title
	Port     int
	OnlyPort bool // decode Port alone (see Options)
	JSON     bool
	Summary  bool
	Verbose  bool
	Color    bool
	Extract  string // directory, or ""
	Diagram  string // file, or ""
	Graphs   string // file for the graphs over time, or ""
	// LineBuffered writes each line at once: for a capture read live from
	// a pipe (tcpdump -w - | stepkit dump -).
	LineBuffered bool
	// Interface, when set, captures live there instead of reading r
	// (see LiveOptions); lines are then written as messages are decoded.
	Interface string
	Count     int64
	Duration  time.Duration
	// Save is the pcapng file a live capture is written to, or "".
	Save string
}

// Result is what a Run found.
type Result struct {
	Stats *Stats
	// Mismatched counts rebuilt files whose MD5 differs from the server's.
	Mismatched int
}

// Run decodes the capture in r and writes the report cfg asks for to out.
func Run(ctx context.Context, r io.Reader, out io.Writer, cfg Config) (*Result, error) {
	if cfg.Extract != "" {
		if err := os.MkdirAll(cfg.Extract, 0o755); err != nil {
			return nil, fmt.Errorf("extract directory: %w", err)
		}
	}
	live := cfg.Interface != ""
	if live {
		cfg.LineBuffered = true
		if cfg.Name == "" || cfg.Name == "-" {
			cfg.Name = cfg.Interface
		}
	}
	var handlers Multi
	var text *TextWriter
	var js *JSONWriter
	if cfg.JSON {
		js = NewJSONWriter(out)
		js.Verbose, js.Quiet, js.LineBuffered = cfg.Verbose, cfg.Summary, cfg.LineBuffered
		handlers = append(handlers, js)
	} else {
		text = NewTextWriter(out)
		text.Color, text.Verbose, text.Quiet, text.LineBuffered = cfg.Color, cfg.Verbose, cfg.Summary, cfg.LineBuffered
		handlers = append(handlers, text)
	}
	coll := &Collector{}
	handlers = append(handlers, coll)
	var dia *Diagram
	if cfg.Diagram != "" {
		dia = NewDiagram(filepath.Base(cfg.Name))
		handlers = append(handlers, dia)
	}
	var tl *Timeline
	if cfg.Graphs != "" || cfg.Summary {
		tl = NewTimeline()
		handlers = append(handlers, tl)
	}
	// Nothing but a verbose listing (MD5s) or extraction reads the bytes of
	// binary parts: otherwise they are passed over, unread where possible.
	// The writers and the timeline keep no message; a diagram does.
	opts := Options{Port: cfg.Port, OnlyPort: cfg.OnlyPort, HashBinary: cfg.Verbose, ExtractDir: cfg.Extract, SkipBinary: true,
		ReuseMessages: cfg.Diagram == ""}
	var st *Stats
	var err error
	if live {
		st, err = decodeLive(ctx, cfg, opts, handlers)
	} else {
		st, err = Decode(ctx, r, opts, handlers)
	}
	if err != nil {
		if text != nil {
			text.Flush()
		}
		if js != nil {
			js.Flush()
		}
		return nil, err
	}
	res := &Result{Stats: st}
	conns := coll.Sorted()
	if js != nil {
		if cfg.Summary {
			js.Times = tl.Stats()
			js.Summary(conns)
		}
		js.Extracted(st.Extracted)
		if err := js.Flush(); err != nil {
			return nil, err
		}
	} else {
		if cfg.Summary {
			text.Times = tl.Stats()
			text.Summary(conns, st)
		}
		for _, x := range st.Extracted {
			if cfg.Extract != "" {
				fmt.Fprintln(text.w, x.Line())
			}
		}
		if err := text.Flush(); err != nil {
			return nil, err
		}
	}
	for _, x := range st.Extracted {
		if x.MD5 != "" && x.Announced != "" && !x.Verified {
			res.Mismatched++
		}
	}
	if dia != nil {
		var b bytes.Buffer
		if err := dia.WriteHTML(&b); err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfg.Diagram, b.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("write diagram: %w", err)
		}
	}
	if cfg.Graphs != "" {
		var b bytes.Buffer
		if err := tl.WriteHTML(&b, filepath.Base(cfg.Name)); err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfg.Graphs, b.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("write graphs: %w", err)
		}
	}
	return res, nil
}

func decodeLive(ctx context.Context, cfg Config, opts Options, h Handler) (*Stats, error) {
	lo := LiveOptions{Interface: cfg.Interface, Port: cfg.Port, OnlyPort: cfg.OnlyPort, Count: cfg.Count, Duration: cfg.Duration}
	if cfg.Save == "" {
		return DecodeLive(ctx, lo, opts, h)
	}
	f, err := os.Create(cfg.Save)
	if err != nil {
		return nil, fmt.Errorf("save capture: %w", err)
	}
	lo.Save = f
	st, err := DecodeLive(ctx, lo, opts, h)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("save capture: %w", cerr)
	}
	if st == nil {
		// Nothing was captured: leave no empty file behind.
		os.Remove(cfg.Save)
	}
	return st, err
}

// Line describes a rebuilt file in one line of text.
func (x Extracted) Line() string {
	dir := "downloaded"
	if x.Upload {
		dir = "uploaded"
	}
	where := x.Path
	if where == "" {
		where = "(not written)"
	}
	s := fmt.Sprintf("file: %s %q (user %s) -> %s: %d of %d blocks", dir, x.Key, x.User, where, x.Blocks, x.Total)
	switch {
	case len(x.Missing) > 0:
		s += ", blocks missing or damaged in the capture: " + rangesText(x.Missing)
	case x.Verified:
		s += ", MD5 " + x.MD5 + " matches the server's"
	case x.MD5 == "":
	case x.Announced == "":
		s += ", MD5 " + x.MD5 + " (the server announced none)"
	default:
		s += ", MD5 " + x.MD5 + " DIFFERS from the server's " + x.Announced
	}
	return s
}
