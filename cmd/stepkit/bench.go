package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/spec"
)

// benchOptions are the flags of stepkit bench.
type benchOptions struct {
	target   string
	user     string
	password string
	clients  int
	size     string
	op       string
	duration time.Duration
	requests int
	window   int
	conns    int
	timeout  time.Duration
	json     bool
}

// Operations a bench run measures.
const (
	benchUpload   = "upload"
	benchDownload = "download"
	benchMixed    = "mixed"
)

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a STEP server: throughput, ops/s and latency percentiles",
		Long: `Run N clients against a STEP server, each on its own connection, uploading
and/or downloading files of --size bytes until --duration has passed or
--requests operations have been made. An upload is FILE SAVE plus every
block (the key is deleted afterwards, untimed); a download is FILE GET plus
every block, MD5-checked, from a file uploaded before the run.

Reports throughput, operations per second and latency percentiles per
operation, and every error with its count, as text or --json.`,
		Example: `  stepkit bench --target 127.0.0.1:1379 --clients 8 --size 1MiB --op upload --duration 10s
  stepkit bench --clients 4 --size 100KiB --op mixed --requests 1000 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.target, "target", "t", spec.DefaultAddr, "server address host:port (env "+envServer+")")
	f.StringVarP(&o.user, "user", "u", "stepkit-bench", "username (env "+envUser+")")
	f.StringVarP(&o.password, "password", "p", "", "password (env "+envPassword+"); default: the course rule")
	f.IntVarP(&o.clients, "clients", "c", 4, "concurrent clients, one connection each")
	f.StringVar(&o.size, "size", "1MiB", "file size (bytes, or with K/M/G, KiB/MiB/GiB)")
	f.StringVar(&o.op, "op", benchUpload, "operation: upload, download or mixed (alternating)")
	f.DurationVarP(&o.duration, "duration", "d", 0, "run for this long (default 10s unless --requests is given)")
	f.IntVarP(&o.requests, "requests", "n", 0, "stop after this many operations in total")
	f.IntVar(&o.window, "window", 0, fmt.Sprintf("blocks in flight per connection (default: automatic, about 4 MiB of blocks (%d at least) on a server that advertises pipelining, else %d for downloads and 1 for uploads)", refclient.DefaultWindow, refclient.DefaultWindow))
	f.IntVar(&o.conns, "conns", 1, "connections per transfer")
	f.DurationVar(&o.timeout, "timeout", refclient.DefaultReplyTimeout, "time allowed for each response")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	return cmd
}

// benchStats collects one operation's results.
type benchStats struct {
	latencies []time.Duration
	bytes     int64
	errors    map[string]int
	failed    int
}

// benchRun is the state shared by the clients of one run.
type benchRun struct {
	o       benchOptions
	opts    *refclient.Options
	size    int64
	data    []byte
	runID   string
	seedKey string
	stopAt  time.Time
	left    atomic.Int64 // operations still to start, with --requests
	seq     atomic.Int64
	// The windows the clients use, known once one has logged in.
	upWindow, downWindow atomic.Int64

	mu    sync.Mutex
	stats map[string]*benchStats
	first error // the first failure, for the exit code
}

func runBench(cmd *cobra.Command, o benchOptions) error {
	fs := cmd.Flags()
	for _, e := range []struct {
		flag, env string
		dst       *string
	}{{"target", envServer, &o.target}, {"user", envUser, &o.user}, {"password", envPassword, &o.password}} {
		if v, ok := os.LookupEnv(e.env); ok && !fs.Changed(e.flag) {
			*e.dst = v
		}
	}
	if err := checkAddr("--target", o.target); err != nil {
		return err
	}
	size, err := parseBytes(o.size)
	if err != nil {
		return usageErrorf("--size: %v", err)
	}
	if size > spec.MaxFileSize || size > 1<<30 {
		return usageErrorf("--size %s: at most 1GiB", o.size)
	}
	switch o.op {
	case benchUpload, benchDownload, benchMixed:
	default:
		return usageErrorf("--op %q: want upload, download or mixed", o.op)
	}
	if o.clients < 1 || o.conns < 1 || (fs.Changed("window") && o.window < 1) {
		return usageErrorf("--clients, --window and --conns must be at least 1")
	}
	if o.requests < 0 || o.duration < 0 {
		return usageErrorf("--requests and --duration must not be negative")
	}
	if o.requests == 0 && o.duration == 0 {
		o.duration = 10 * time.Second
	}

	r := &benchRun{o: o, size: size, data: make([]byte, size), runID: uuid.NewString()[:8],
		stats: map[string]*benchStats{},
		opts:  &refclient.Options{Window: o.window, Conns: o.conns, ReplyTimeout: o.timeout}}
	if _, err := rand.Read(r.data); err != nil {
		return err
	}
	ctx := cmd.Context()

	if o.op != benchUpload {
		r.seedKey = "stepkit-bench-" + r.runID + "-seed"
		c, err := r.connect(ctx)
		if err != nil {
			return classify(fmt.Errorf("bench set-up: %w", err))
		}
		if _, err := c.Upload(ctx, r.seedKey, bytes.NewReader(r.data), size, nil); err != nil {
			c.Close()
			return classify(fmt.Errorf("bench set-up: upload of the file to download: %w", err))
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), o.timeout)
			defer cancel()
			if c.Broken() == nil {
				_ = c.DeleteFile(cctx, r.seedKey)
			}
			_ = c.Bye()
		}()
	}

	start := time.Now()
	if o.duration > 0 {
		r.stopAt = start.Add(o.duration)
	}
	r.left.Store(int64(o.requests))
	var wg sync.WaitGroup
	for w := 0; w < o.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := r.report(elapsed)
	if o.json {
		if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
			return err
		}
	} else {
		rep.writeText(cmd.OutOrStdout())
	}
	if rep.Ops == 0 && len(rep.Errors) > 0 {
		return withExit(rep.exitCode, fmt.Errorf("bench: no operation succeeded: %s", rep.Errors[0].Error))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// connect dials and logs in one bench client.
func (r *benchRun) connect(ctx context.Context) (*refclient.Client, error) {
	c, err := refclient.Dial(ctx, r.o.target, r.opts)
	if err != nil {
		return nil, err
	}
	if _, err := c.Login(ctx, r.o.user, r.o.password); err != nil {
		c.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	return c, nil
}

// next reports whether another operation may start.
func (r *benchRun) next(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if !r.stopAt.IsZero() && !time.Now().Before(r.stopAt) {
		return false
	}
	if r.o.requests == 0 {
		return true
	}
	return r.left.Add(-1) >= 0
}

// client runs operations on one connection until the run ends.
func (r *benchRun) client(ctx context.Context, w int) {
	var c *refclient.Client
	defer func() {
		if c != nil {
			_ = c.Bye()
		}
	}()
	for i := 0; r.next(ctx); i++ {
		op := r.o.op
		if op == benchMixed {
			op = benchUpload
			if r.seq.Add(1)%2 == 0 {
				op = benchDownload
			}
		}
		if c == nil || c.Broken() != nil {
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = r.connect(ctx); err != nil {
				c = nil
				r.record("connect", 0, err)
				// Count the operation as failed and pace the retries.
				r.record(op, 0, errors.New("not run: no connection"))
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		start := time.Now()
		var err error
		switch op {
		case benchUpload:
			key := fmt.Sprintf("stepkit-bench-%s-%d-%d", r.runID, w, i)
			var res *refclient.UploadResult
			res, err = c.Upload(ctx, key, bytes.NewReader(r.data), r.size, nil)
			d := time.Since(start)
			if res != nil && res.Window > 0 {
				r.upWindow.Store(int64(res.Window))
			}
			r.record(op, d, err)
			if err == nil || refclient.IsStatus(err, spec.StatusKeyExists) {
				if derr := c.DeleteFile(ctx, key); derr != nil {
					r.record("cleanup", 0, derr)
				}
			}
		case benchDownload:
			var res *refclient.DownloadResult
			res, err = c.Download(ctx, r.seedKey, io.Discard, nil)
			if res != nil && res.Window > 0 {
				r.downWindow.Store(int64(res.Window))
			}
			r.record(op, time.Since(start), err)
		}
	}
}

// record adds one result; d is ignored for failures.
func (r *benchRun) record(op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats[op]
	if s == nil {
		s = &benchStats{errors: map[string]int{}}
		r.stats[op] = s
	}
	if err != nil {
		s.failed++
		s.errors[err.Error()]++
		if r.first == nil {
			r.first = err
		}
		return
	}
	if op == "cleanup" || op == "connect" {
		return
	}
	s.latencies = append(s.latencies, d)
	s.bytes += r.size
}

// benchReport is the result of a run; its JSON form is the --json output.
type benchReport struct {
	Target     string            `json:"target"`
	Clients    int               `json:"clients"`
	Op         string            `json:"op"`
	Size       int64             `json:"size"`
	Window     int               `json:"window"` // as asked; 0: automatic
	UpWindow   int               `json:"upload_window,omitempty"`
	DownWindow int               `json:"download_window,omitempty"`
	Conns      int               `json:"conns"`
	ElapsedS   float64           `json:"elapsed_s"`
	Ops        int               `json:"ops"`
	Failed     int               `json:"failed"`
	OpsPerS    float64           `json:"ops_per_s"`
	BytesPerS  float64           `json:"bytes_per_s"`
	Operations []benchOpReport   `json:"operations"`
	Errors     []benchErrorCount `json:"errors"`
	exitCode   int
}

type benchOpReport struct {
	Op        string          `json:"op"`
	Count     int             `json:"count"`
	Failed    int             `json:"failed"`
	OpsPerS   float64         `json:"ops_per_s"`
	BytesPerS float64         `json:"bytes_per_s"`
	LatencyMS benchPercentile `json:"latency_ms"`
}

type benchPercentile struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

type benchErrorCount struct {
	Op    string `json:"op"`
	Error string `json:"error"`
	Count int    `json:"count"`
}

func (r *benchRun) report(elapsed time.Duration) *benchReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := elapsed.Seconds()
	rep := &benchReport{Target: r.o.target, Clients: r.o.clients, Op: r.o.op, Size: r.size,
		Window: r.o.window, Conns: r.o.conns, ElapsedS: secs, Errors: []benchErrorCount{}, Operations: []benchOpReport{}}
	if r.o.op != benchDownload {
		rep.UpWindow = int(r.upWindow.Load())
	}
	if r.o.op != benchUpload {
		rep.DownWindow = int(r.downWindow.Load())
	}
	ops := make([]string, 0, len(r.stats))
	for op := range r.stats {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var total int64
	for _, op := range ops {
		s := r.stats[op]
		for msg, n := range s.errors {
			rep.Errors = append(rep.Errors, benchErrorCount{Op: op, Error: msg, Count: n})
		}
		if op == "cleanup" || op == "connect" {
			continue
		}
		or := benchOpReport{Op: op, Count: len(s.latencies), Failed: s.failed}
		if secs > 0 {
			or.OpsPerS = float64(or.Count) / secs
			or.BytesPerS = float64(s.bytes) / secs
		}
		or.LatencyMS = percentiles(s.latencies)
		rep.Operations = append(rep.Operations, or)
		rep.Ops += or.Count
		rep.Failed += s.failed
		total += s.bytes
	}
	sort.Slice(rep.Errors, func(i, j int) bool {
		if rep.Errors[i].Count != rep.Errors[j].Count {
			return rep.Errors[i].Count > rep.Errors[j].Count
		}
		return rep.Errors[i].Error < rep.Errors[j].Error
	})
	if secs > 0 {
		rep.OpsPerS = float64(rep.Ops) / secs
		rep.BytesPerS = float64(total) / secs
	}
	rep.exitCode = exitFailure
	var ee *exitError
	if errors.As(classify(r.first), &ee) {
		rep.exitCode = ee.code
	}
	return rep
}

func percentiles(d []time.Duration) benchPercentile {
	if len(d) == 0 {
		return benchPercentile{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return benchPercentile{Min: ms(s[0]), Mean: ms(sum / time.Duration(len(s))), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(s[len(s)-1])}
}

func (rep *benchReport) writeText(w io.Writer) {
	window := fmt.Sprint(rep.Window)
	if rep.Window == 0 {
		var parts []string
		if rep.UpWindow > 0 {
			parts = append(parts, fmt.Sprintf("%d for uploads", rep.UpWindow))
		}
		if rep.DownWindow > 0 {
			parts = append(parts, fmt.Sprintf("%d for downloads", rep.DownWindow))
		}
		window = "automatic"
		if len(parts) > 0 {
			window += " (" + strings.Join(parts, ", ") + ")"
		}
	}
	fmt.Fprintf(w, "target %s, %d clients, op %s, size %d bytes, window %s, %d conn(s) per transfer\n",
		rep.Target, rep.Clients, rep.Op, rep.Size, window, rep.Conns)
	fmt.Fprintf(w, "finished in %.2fs: %d ops, %d failed, %.1f ops/s, %.2f MB/s\n\n",
		rep.ElapsedS, rep.Ops, rep.Failed, rep.OpsPerS, rep.BytesPerS/1e6)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tok\tfailed\tops/s\tMB/s\tmin ms\tmean ms\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	for _, o := range rep.Operations {
		l := o.LatencyMS
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
			o.Op, o.Count, o.Failed, o.OpsPerS, o.BytesPerS/1e6, l.Min, l.Mean, l.P50, l.P90, l.P99, l.Max)
	}
	tw.Flush()
	if len(rep.Errors) == 0 {
		fmt.Fprintln(w, "\nno errors")
		return
	}
	fmt.Fprintln(w, "\nerrors:")
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "  %6d  %-8s %s\n", e.Count, e.Op, e.Error)
	}
}
