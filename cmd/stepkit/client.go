package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/spec"
)

// Environment variables the client commands read for flags not given.
const (
	envServer     = "STEPKIT_SERVER"
	envUser       = "STEPKIT_USER"
	envPassword   = "STEPKIT_PASSWORD"
	envToken      = "STEPKIT_TOKEN"
	envJournal    = "STEPKIT_JOURNAL_DIR"
	envJournalAge = "STEPKIT_JOURNAL_MAX_AGE"
)

// clientFlags are the connection flags every client command takes.
type clientFlags struct {
	server       string
	user         string
	password     string
	token        string
	json         bool
	dialTimeout  time.Duration
	replyTimeout time.Duration
	window       int
	conns        int
	blockSize    int64
	journalDir   string
	journalAge   string
	maxAge       time.Duration
	retries      int
	noProgress   bool
}

func (f *clientFlags) register(fs *pflag.FlagSet, transfer bool) {
	fs.StringVarP(&f.server, "server", "s", spec.DefaultAddr, "server address host:port (env "+envServer+")")
	fs.StringVarP(&f.user, "user", "u", "", "username, e.g. a student id (env "+envUser+")")
	fs.StringVarP(&f.password, "password", "p", "", "password (env "+envPassword+"); default: the course rule, MD5 hex of the username")
	fs.StringVar(&f.token, "token", "", "use this token instead of logging in (env "+envToken+")")
	fs.BoolVar(&f.json, "json", false, "print results as JSON")
	fs.DurationVar(&f.dialTimeout, "connect-timeout", refclient.DefaultDialTimeout, "time allowed to connect")
	fs.DurationVar(&f.replyTimeout, "timeout", refclient.DefaultReplyTimeout, "time allowed for each response")
	fs.IntVar(&f.retries, "retries", refclient.DefaultRateLimitRetries, "times a request refused with 429 (rate limit) is sent again, waiting 0.25s, 0.5s, 1s, ... (0: never)")
	if transfer {
		fs.IntVar(&f.window, "window", 0, fmt.Sprintf("blocks in flight per connection (1: one request at a time; default: automatic, about 4 MiB of blocks (%d at least) on a server that advertises pipelining, else %d for downloads and 1 for uploads)", refclient.DefaultWindow, refclient.DefaultWindow))
		fs.IntVar(&f.conns, "conns", 1, "most connections per transfer (more than 1 only where the server serves several at a time; not every course server does); a file uses more than one only where its first block is answered too slowly for one connection's window to keep up with its MD5 (a long round trip, a slow store, one block in flight), and an upload only on a server that advertised pipelining")
		fs.Int64Var(&f.blockSize, "block-size", 0, fmt.Sprintf("block_size to ask of a server that lets clients choose (STEP.md EXT-7; default %d, capped by the server; other servers are never asked)", refclient.DefaultBlockSize))
		fs.StringVar(&f.journalDir, "journal-dir", "", "where resume journals live (env "+envJournal+"; default: the user cache dir)")
		fs.StringVar(&f.journalAge, "journal-max-age", refclient.DefaultJournalMaxAge.String(), "remove journals of transfers untouched for longer, and their partial downloads (env "+envJournalAge+"; 0: never)")
		fs.BoolVar(&f.noProgress, "no-progress", false, "never draw a progress bar")
	}
}

// resolve fills flags not given from the environment and checks them.
func (f *clientFlags) resolve(cmd *cobra.Command) error {
	fs := cmd.Flags()
	fromEnv := func(name, env string, dst *string) {
		if fs.Lookup(name) == nil || fs.Changed(name) {
			return
		}
		if v, ok := os.LookupEnv(env); ok {
			*dst = v
		}
	}
	fromEnv("server", envServer, &f.server)
	fromEnv("user", envUser, &f.user)
	fromEnv("password", envPassword, &f.password)
	fromEnv("token", envToken, &f.token)
	fromEnv("journal-dir", envJournal, &f.journalDir)
	fromEnv("journal-max-age", envJournalAge, &f.journalAge)
	if f.retries < 0 {
		return usageErrorf("--retries must not be negative")
	}
	if err := checkAddr("--server", f.server); err != nil {
		return err
	}
	if f.token == "" && !fs.Changed("user") && os.Getenv(envUser) == "" {
		return usageErrorf("--user is required (or %s, or --token)", envUser)
	}
	if fs.Lookup("window") != nil {
		if fs.Changed("window") && f.window < 1 {
			return usageErrorf("--window must be at least 1 (leave it out for the automatic window)")
		}
		if f.conns < 1 {
			return usageErrorf("--conns must be at least 1")
		}
		if fs.Changed("block-size") && f.blockSize < 1 {
			return usageErrorf("--block-size must be at least 1 (leave it out for the default)")
		}
		age, err := time.ParseDuration(f.journalAge)
		if err != nil || age < 0 {
			return usageErrorf("--journal-max-age %q is not a duration such as 336h (0: never)", f.journalAge)
		}
		f.maxAge = age
		if f.journalDir == "" {
			if dir, err := os.UserCacheDir(); err == nil {
				f.journalDir = filepath.Join(dir, "stepkit", "journal")
			}
		}
	}
	return nil
}

func (f *clientFlags) options() *refclient.Options {
	o := &refclient.Options{
		DialTimeout:      f.dialTimeout,
		ReplyTimeout:     f.replyTimeout,
		Window:           f.window,
		Conns:            f.conns,
		BlockSize:        f.blockSize,
		JournalDir:       f.journalDir,
		JournalMaxAge:    f.maxAge,
		RateLimitRetries: f.retries,
	}
	if f.maxAge == 0 {
		o.JournalMaxAge = -1 // 0 on the command line: never
	}
	if f.retries == 0 {
		o.RateLimitRetries = -1
	}
	return o
}

// connect dials the server and logs in (or adopts --token).
func (f *clientFlags) connect(ctx context.Context) (*refclient.Client, error) {
	c, err := refclient.Dial(ctx, f.server, f.options())
	if err != nil {
		return nil, classify(err)
	}
	if f.token != "" {
		c.SetToken(f.token)
		return c, nil
	}
	if _, err := c.Login(ctx, f.user, f.password); err != nil {
		c.Close()
		return nil, classify(fmt.Errorf("login as %q: %w", f.user, err))
	}
	return c, nil
}

// run resolves the flags, connects and logs in, runs do, and says BYE.
func (f *clientFlags) run(cmd *cobra.Command, do func(ctx context.Context, c *refclient.Client) error) error {
	if err := f.resolve(cmd); err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Bye()
	return do(ctx, c)
}

// classify attaches the exit code an error deserves.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) || isUsageError(err) {
		return err
	}
	var se *refclient.StatusError
	var pe *refclient.ProtocolError
	var nr *refclient.NoResponseError
	var fe *spec.FrameError
	var ne net.Error
	var local *fs.PathError
	switch {
	case errors.Is(err, refclient.ErrMD5Mismatch):
		return withExit(exitMismatch, err)
	case errors.As(err, &se):
		return withExit(exitRefused, err)
	case errors.As(err, &local):
		// A local file: its syscall.Errno would pass for a net.Error below.
		return withExit(exitFailure, err)
	case errors.As(err, &pe), errors.As(err, &nr), errors.As(err, &fe), errors.As(err, &ne),
		errors.Is(err, refclient.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return withExit(exitNetwork, err)
	}
	return err
}

// firstErr keeps the first failure: its exit code is the command's.
func firstErr(a, b error) error {
	if a == nil {
		return b
	}
	return a
}

// statusOf is the server status an error carries, 0 if none.
func statusOf(err error) int {
	var se *refclient.StatusError
	if errors.As(err, &se) {
		return int(se.Status)
	}
	return 0
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// progress returns a progress callback drawing a bar on stderr when stderr
// is a terminal, and a function that finishes the bar.
func progress(cmd *cobra.Command, f *clientFlags, total int64, desc string) (func(int64), func()) {
	w := cmd.ErrOrStderr()
	file, ok := w.(*os.File)
	if f.noProgress || !ok || !term.IsTerminal(int(file.Fd())) || total <= 0 {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(80*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
	)
	return func(n int64) { _ = bar.Add64(n) }, func() { _ = bar.Finish() }
}

func newClientCmds() []*cobra.Command {
	return []*cobra.Command{
		newLoginCmd(),
		newUploadCmd(),
		newDownloadCmd(),
		newRmCmd(),
		newDataCmd(),
		newCourseClientCmd(),
	}
}

func newLoginCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in and print the token",
		Long: `Log in and print the token the server issues. The password defaults to the
course rule (the MD5 hex of the username). Other commands log in by
themselves; pass a token to them with --token to skip the LOGIN.`,
		Example: `  stepkit login --user 2362202
  STEPKIT_USER=2362202 stepkit login --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(cmd); err != nil {
				return err
			}
			if f.token != "" {
				return usageErrorf("login with --token makes no sense")
			}
			c, err := f.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Bye()
			if f.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"server": f.server, "user": f.user, "token": c.Token()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), c.Token())
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

// uploadReport is one upload's --json line.
type uploadReport struct {
	File       string  `json:"file"`
	Key        string  `json:"key,omitempty"`
	Size       int64   `json:"size"`
	BlockSize  int64   `json:"block_size,omitempty"`
	TotalBlock int64   `json:"total_block"`
	BlocksSent int64   `json:"blocks_sent"`
	MD5        string  `json:"md5,omitempty"`
	ServerMD5  string  `json:"server_md5,omitempty"`
	Verified   bool    `json:"verified"`
	Resumed    bool    `json:"resumed"`
	Window     int     `json:"window,omitempty"`  // blocks allowed in flight per connection
	Conns      int     `json:"conns,omitempty"`   // connections the blocks went over
	Retried    bool    `json:"retried,omitempty"` // finished with one block in flight after the server lost step
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
	Status     int     `json:"status,omitempty"`
}

func newUploadCmd() *cobra.Command {
	var f clientFlags
	var key string
	var restart bool
	var parallel int
	cmd := &cobra.Command{
		Use:   "upload FILE...",
		Short: "Upload files (FILE SAVE, then UPLOAD blocks), checking the server's MD5",
		Long: `Upload each FILE under its base name (or --key for a single file): ask for a
plan with FILE SAVE, send the blocks the plan asks for, and compare the MD5
the server reports with the local one.

Blocks go one at a time unless the server advertised pipelining when logging
in (stepkit serve does; the course server does not, and misreads pipelined
blocks), then about 4 MiB of blocks at a time (16 at least); --window N sets
the number in flight. An upload
whose server loses step with several blocks in flight is finished once more
with one block in flight.

Several FILEs go at once, one connection each, to a server that advertised
pipelining (as many as the cores, 2 to 8; --parallel N sets the number), and
one after another to any other server; the reports keep the order of the
arguments. A server that lets clients choose the block size (stepkit serve,
STEP.md EXT-7) is asked for blocks of 256 KiB, or a sixteenth of a file
under 4 MiB (--block-size N); other servers plan as they always do.

An interrupted upload resumes where it stopped when run again with the same
server, user, file and key: a journal of acknowledged blocks lets the client
send only the missing ones, without a new FILE SAVE. --restart starts afresh.

Exit codes: 2 usage, 3 network, 4 refused by the server, 5 MD5 mismatch.`,
		Example: `  stepkit upload report.pdf --user 2362202
  stepkit upload a.bin b.bin --server lab-pc-05:1379 --user 2362202 --json
  stepkit upload big.iso --key iso --window 32 --conns 2 --user 2362202
  stepkit upload *.pdf --parallel 4 --user 2362202`,
		Args: minArgs(1, "at least one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.resolve(cmd); err != nil {
				return err
			}
			if key != "" && len(args) > 1 {
				return usageErrorf("--key names one file, %d given", len(args))
			}
			for _, a := range args {
				fi, err := os.Stat(a)
				if err != nil {
					return usageErrorf("%s", fileProblem(a, err))
				}
				if !fi.Mode().IsRegular() {
					return usageErrorf("%s is not a regular file", a)
				}
			}
			if cmd.Flags().Changed("parallel") && parallel < 1 {
				return usageErrorf("--parallel must be at least 1 (leave it out for the automatic number)")
			}
			return runUploads(cmd, &f, args, key, restart, parallel)
		},
	}
	f.register(cmd.Flags(), true)
	cmd.Flags().StringVarP(&key, "key", "k", "", "key to store the file under (default: the file's base name)")
	cmd.Flags().BoolVar(&restart, "restart", false, "ignore any resume journal and upload afresh")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "files sent at once, one connection each (default: automatic, as many as cores (2..8) to a server that advertises pipelining, else 1)")
	return cmd
}

// autoParallel is how many files "stepkit upload" sends at once to a
// server that advertised pipelining (one connection each): enough to keep
// every core busy.
func autoParallel() int { return min(max(2, runtime.NumCPU()), 8) }

func runUploads(cmd *cobra.Command, f *clientFlags, files []string, key string, restart bool, parallel int) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	c, err := f.connect(ctx)
	if err != nil {
		return err
	}
	// Several files go at once, one connection each, to a server known to
	// serve connections at once (it advertised pipelining: stepkit serve);
	// some course servers serve one connection at a time.
	if parallel == 0 {
		parallel = 1
		if c.Pipelining() {
			parallel = autoParallel()
		}
	}
	clients := []*refclient.Client{c}
	for len(clients) < min(parallel, len(files)) {
		cc, err := c.Dup(ctx)
		if err != nil {
			break
		}
		clients = append(clients, cc)
	}
	defer func() {
		for _, cl := range clients {
			cl.Bye()
		}
	}()

	// One bar for every file when they go at once, one per file otherwise.
	var prog func(int64)
	finish := func() {}
	if len(clients) > 1 {
		var total int64
		for _, file := range files {
			if fi, err := os.Stat(file); err == nil {
				total += fi.Size()
			}
		}
		prog, finish = progress(cmd, f, total, fmt.Sprintf("%d files", len(files)))
	}
	reps := make([]uploadReport, len(files))
	errs := make([]error, len(files))
	done := make([]chan struct{}, len(files))
	for i := range done {
		done[i] = make(chan struct{})
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range files {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for w := range clients {
		go func() {
			for i := range next {
				p, endBar := prog, func() {}
				if len(clients) == 1 {
					var size int64
					if fi, err := os.Stat(files[i]); err == nil {
						size = fi.Size()
					}
					p, endBar = progress(cmd, f, size, filepath.Base(files[i]))
				}
				reps[i], errs[i] = uploadOne(ctx, f, &clients[w], files[i], key, restart, p)
				endBar()
				close(done[i])
			}
		}()
	}

	var first error
	failed := 0
	for i, file := range files {
		select {
		case <-done[i]:
		case <-ctx.Done():
			<-done[i] // the transfer in progress ends with the context
		}
		rep, err := reps[i], errs[i]
		if err != nil {
			first = firstErr(first, err)
			failed++
			if len(files) > 1 {
				fmt.Fprintln(cmd.ErrOrStderr(), "stepkit:", err)
			}
		}
		if f.json {
			printJSON(out, rep)
			continue
		}
		if rep.Error != "" {
			continue
		}
		check := "MD5 verified"
		if !rep.Verified {
			check = "MD5 not verified: the server reported none"
		}
		resumed := ""
		if rep.Resumed {
			resumed = ", resumed"
		}
		if rep.Retried {
			resumed += ", finished one block at a time after the server lost step with several in flight"
		}
		fmt.Fprintf(out, "%s -> %s: %d bytes, %d blocks of %d (%d sent%s), md5 %s, %s, %s\n",
			file, rep.Key, rep.Size, rep.TotalBlock, rep.BlockSize, rep.BlocksSent, resumed, rep.MD5, check, rate(rep.Size, rep.Seconds))
	}
	finish()
	if first != nil && len(files) > 1 {
		// Each failure is on stderr already; the first decides the exit code.
		code := exitFailure
		var ee *exitError
		if errors.As(first, &ee) {
			code = ee.code
		}
		return withExit(code, fmt.Errorf("%d of %d uploads failed", failed, len(files)))
	}
	return first
}

// uploadOne uploads file on *c (replaced by a new connection when the last
// transfer left it out of step) and returns its report and error.
func uploadOne(ctx context.Context, f *clientFlags, c **refclient.Client, file, key string, restart bool, prog func(int64)) (uploadReport, error) {
	k := key
	if k == "" {
		k = filepath.Base(file)
	}
	fi, _ := os.Stat(file)
	var size int64
	if fi != nil {
		size = fi.Size()
	}
	rep := uploadReport{File: file, Key: k, Size: size}
	if (*c).Broken() != nil {
		// The last transfer left the connection out of step.
		(*c).Close()
		nc, err := f.connect(ctx)
		if err != nil {
			rep.Error, rep.Status = err.Error(), statusOf(err)
			return rep, err
		}
		*c = nc
	}
	start := time.Now()
	res, err := (*c).UploadFile(ctx, file, k, &refclient.TransferOptions{Restart: restart, Progress: prog})
	rep.Seconds = time.Since(start).Seconds()
	if res != nil {
		p := res.Plan
		rep.Key, rep.BlockSize, rep.TotalBlock = p.Key, p.BlockSize, p.TotalBlock
		rep.BlocksSent, rep.MD5, rep.ServerMD5 = res.Sent, res.MD5, res.ServerMD5
		rep.Verified, rep.Resumed = res.Verified, res.Resumed
		rep.Window, rep.Conns, rep.Retried = res.Window, res.Conns, res.Retried
	}
	if err != nil {
		err = classify(fmt.Errorf("upload %s: %w", file, err))
		rep.Error, rep.Status = err.Error(), statusOf(err)
		if !errors.Is(err, refclient.ErrMD5Mismatch) && res != nil && res.Plan.TotalBlock > 0 && statusOf(err) == 0 {
			err = fmt.Errorf("%w (run the same command again to resume)", err)
		}
	}
	return rep, err
}

// checkAddr checks a host:port flag value before anything is dialled, so
// that a typo is a usage error rather than a network one.
func checkAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("%s %q: want host:port", flag, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return usageErrorf("%s %q: port %q is not a TCP port (1-65535)", flag, addr, port)
	}
	return nil
}

// fileProblem says what is wrong with a local file argument.
func fileProblem(name string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("%s: %v", name, err)
}

func rate(n int64, secs float64) string {
	if secs <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/secs/1e6)
}

// downloadReport is a download's --json output.
type downloadReport struct {
	Key        string  `json:"key"`
	Path       string  `json:"path"`
	Size       int64   `json:"size"`
	BlockSize  int64   `json:"block_size,omitempty"`
	TotalBlock int64   `json:"total_block"`
	Received   int64   `json:"blocks_received"`
	Conns      int     `json:"conns,omitempty"` // connections the blocks came over
	MD5        string  `json:"md5,omitempty"`
	ServerMD5  string  `json:"server_md5,omitempty"`
	Verified   bool    `json:"verified"`
	Resumed    bool    `json:"resumed"`
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
	Status     int     `json:"status,omitempty"`
}

func newDownloadCmd() *cobra.Command {
	var f clientFlags
	var output string
	var restart bool
	cmd := &cobra.Command{
		Use:   "download KEY",
		Short: "Download a file (FILE GET, then DOWNLOAD blocks), checking its MD5",
		Long: `Download the file stored under KEY to -o PATH (default: KEY in the current
directory; a directory as PATH receives KEY inside it). Blocks go to a hidden
partial file beside PATH that is renamed into place only when its MD5 matches
the server's. An interrupted download resumes when run again; --restart
starts afresh.

With -o - the file is written to standard output as it arrives and the
report to standard error; the MD5 is still checked, and exit status 5 says
that what was written does not match (nothing is resumed).

Exit codes: 2 usage, 3 network, 4 refused by the server, 5 MD5 mismatch.`,
		Example: `  stepkit download report.pdf --user 2362202
  stepkit download iso -o /tmp/big.iso --window 32 --user 2362202
  stepkit download notes.txt -o - --user 2362202 | less`,
		Args: exactArgs(1, "one KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.resolve(cmd); err != nil {
				return err
			}
			key := args[0]
			toStdout := output == "-"
			dest := "-"
			if !toStdout {
				var err error
				if dest, err = downloadPath(key, output); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			c, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Bye()
			plan, err := c.FileInfo(ctx, key)
			if err != nil {
				return classify(fmt.Errorf("download %q: %w", key, err))
			}
			prog, done := progress(cmd, &f, plan.Size, filepath.Base(dest))
			start := time.Now()
			topts := &refclient.TransferOptions{Restart: restart, Progress: prog}
			var res *refclient.DownloadResult
			report := cmd.OutOrStdout()
			if toStdout {
				// The data goes to standard output as it arrives, so the
				// report goes to standard error; a mismatch is told by
				// the exit status, after the bytes were written.
				report = cmd.ErrOrStderr()
				out := bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)
				res, err = c.Download(ctx, key, out, topts)
				if ferr := out.Flush(); err == nil && ferr != nil {
					err = fmt.Errorf("standard output: %w", ferr)
				}
			} else {
				res, err = c.DownloadFile(ctx, key, dest, topts)
			}
			done()
			rep := downloadReport{Key: key, Path: dest, Seconds: time.Since(start).Seconds()}
			if res != nil {
				p := res.Plan
				rep.Size, rep.BlockSize, rep.TotalBlock, rep.ServerMD5 = p.Size, p.BlockSize, p.TotalBlock, p.MD5
				rep.Received, rep.MD5, rep.Verified, rep.Resumed = res.Received, res.MD5, res.Verified, res.Resumed
				rep.Conns = res.Conns
			}
			if err != nil {
				err = classify(fmt.Errorf("download %q: %w", key, err))
				rep.Error, rep.Status = err.Error(), statusOf(err)
			}
			if f.json {
				printJSON(report, rep)
			} else if err == nil {
				check := "MD5 verified"
				if !rep.Verified {
					check = "MD5 not verified: the server reported none"
				}
				resumed := ""
				if rep.Resumed {
					resumed = ", resumed"
				}
				fmt.Fprintf(report, "%s -> %s: %d bytes, %d blocks of %d (%d received%s), md5 %s, %s, %s\n",
					key, dest, rep.Size, rep.TotalBlock, rep.BlockSize, rep.Received, resumed, rep.MD5, check, rate(rep.Size, rep.Seconds))
			}
			return err
		},
	}
	f.register(cmd.Flags(), true)
	cmd.Flags().StringVarP(&output, "output", "o", "", "where to write the file (default: KEY in the current directory; -: standard output)")
	cmd.Flags().BoolVar(&restart, "restart", false, "ignore any resume journal and download afresh")
	return cmd
}

// downloadPath is where a download of key goes. A key is used as a file
// name only if it is one: keys such as "../x" need -o.
func downloadPath(key, output string) (string, error) {
	if output == "" {
		if !filepath.IsLocal(key) || strings.ContainsAny(key, `/\`) {
			return "", usageErrorf("key %q is not a plain file name; choose one with -o", key)
		}
		return key, nil
	}
	if fi, err := os.Stat(output); err == nil && fi.IsDir() {
		if !filepath.IsLocal(key) || strings.ContainsAny(key, `/\`) {
			return "", usageErrorf("key %q is not a plain file name; give -o a file path", key)
		}
		return filepath.Join(output, key), nil
	}
	return output, nil
}

func newRmCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "rm KEY...",
		Short:   "Delete files (FILE DELETE)",
		Args:    minArgs(1, "at least one KEY"),
		Example: `  stepkit rm report.pdf --user 2362202`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, func(ctx context.Context, c *refclient.Client) error {
				var first error
				failed := 0
				for _, key := range args {
					err := c.DeleteFile(ctx, key)
					if err != nil {
						err = classify(fmt.Errorf("rm %q: %w", key, err))
						first = firstErr(first, err)
						failed++
						if len(args) > 1 {
							fmt.Fprintln(cmd.ErrOrStderr(), "stepkit:", err)
						}
					}
					if f.json {
						rep := map[string]any{"key": key, "deleted": err == nil}
						if err != nil {
							rep["error"], rep["status"] = err.Error(), statusOf(err)
						}
						printJSON(cmd.OutOrStdout(), rep)
					} else if err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", key)
					}
					if c.Broken() != nil {
						break
					}
				}
				if first != nil && len(args) > 1 {
					code := exitFailure
					var ee *exitError
					if errors.As(first, &ee) {
						code = ee.code
					}
					return withExit(code, fmt.Errorf("%d of %d deletions failed", failed, len(args)))
				}
				return first
			})
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:                   "data",
		Short:                 "Store, fetch and delete JSON documents (DATA SAVE, GET, DELETE)",
		Args:                  groupArgs,
		RunE:                  groupRun,
		DisableFlagsInUseLine: true,
	}
	cmd.AddCommand(newDataPutCmd(), newDataGetCmd(), newDataRmCmd())
	return cmd
}

func newDataPutCmd() *cobra.Command {
	var f clientFlags
	var key string
	cmd := &cobra.Command{
		Use:   "put [DOC]",
		Short: "Store a JSON object (DATA SAVE); prints its key",
		Long: `Store the JSON object DOC (read from standard input when DOC is "-" or
absent) under --key, or under a key the server chooses. Its fields are sent
as the request's fields; protocol fields (operation, direction, type, token,
status, status_msg) in DOC are ignored.`,
		Example: `  stepkit data put '{"name":"Zoë","score":92}' --key grade --user 2362202
  echo '{"a":1}' | stepkit data put --user 2362202`,
		Args: maxArgs(1, "at most one DOC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.resolve(cmd); err != nil {
				return err
			}
			var text []byte
			if len(args) == 0 || args[0] == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return err
				}
				text = b
			} else {
				text = []byte(args[0])
			}
			doc := spec.NewMessage()
			if err := doc.UnmarshalJSON([]byte(strings.TrimSpace(string(text)))); err != nil {
				return usageErrorf("DOC is not a JSON object: %v", err)
			}
			ctx := cmd.Context()
			c, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Bye()
			got, err := c.SaveData(ctx, key, doc)
			if err != nil {
				return classify(fmt.Errorf("data put: %w", err))
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"key": got})
			}
			fmt.Fprintln(cmd.OutOrStdout(), got)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	cmd.Flags().StringVarP(&key, "key", "k", "", "key to store the document under (default: the server chooses)")
	return cmd
}

func newDataGetCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the JSON object stored under KEY (DATA GET)",
		Args:  exactArgs(1, "one KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, func(ctx context.Context, c *refclient.Client) error {
				doc, err := c.GetData(ctx, args[0])
				if err != nil {
					return classify(fmt.Errorf("data get %q: %w", args[0], err))
				}
				// The document itself is JSON; --json changes nothing.
				fmt.Fprintln(cmd.OutOrStdout(), doc.JSONString())
				return nil
			})
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

func newDataRmCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rm KEY",
		Short: "Delete the JSON object stored under KEY (DATA DELETE)",
		Args:  exactArgs(1, "one KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, func(ctx context.Context, c *refclient.Client) error {
				if err := c.DeleteData(ctx, args[0]); err != nil {
					return classify(fmt.Errorf("data rm %q: %w", args[0], err))
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"key": args[0], "deleted": true})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
				return nil
			})
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

// normaliseCourseArgs rewrites the course client's long flags written with
// one dash, as its 2023 sheet did ("-server_ip", "-id", and "-port", with
// or without "=value"), to their double-dash form.
func normaliseCourseArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			switch name, _, _ := strings.Cut(a[1:], "="); name {
			case "server_ip", "id", "port", "timeout":
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

func newCourseClientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "course-client --server_ip IP --id ID -f FILE",
		Short: "Upload a file with the course client's command line",
		Long: `A drop-in for the course's client: log in as ID (password: MD5 of ID),
upload FILE to IP port 1379 under its base name, and compare MD5s. The
flags may be written with one dash, as the 2023 sheet did
(-server_ip IP -id ID -f FILE), and the file flag as --f FILE, as most course
clients spell it. --port changes the port, --timeout the time allowed for
each response (30s). Blocks go one at a time unless the
server advertises pipelining (the course server does not). Resume, --json and
the exit codes are those of stepkit upload.`,
		Example: `  stepkit course-client --server_ip 127.0.0.1 --id 2362202 -f report.pdf
  stepkit course-client -server_ip 127.0.0.1 -id 2362202 -f report.pdf
  stepkit course-client --server_ip 127.0.0.1 --id 2362202 --f report.pdf`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := pflag.NewFlagSet("course-client", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var ip, id, file string
			var port int
			var f clientFlags
			courseClientFlags(fs, &ip, &id, &file, &port, &f.json)
			help := fs.BoolP("help", "h", false, "help")
			fs.DurationVar(&f.replyTimeout, "timeout", refclient.DefaultReplyTimeout, "time allowed for each response")
			if err := fs.Parse(normaliseCourseArgs(args)); err != nil {
				return usageErrorf("%s: %v %s", subcommand(cmd), err, seeHelp(cmd))
			}
			if *help {
				return cmd.Help()
			}
			if ip == "" || id == "" || file == "" {
				return usageErrorf("course-client needs --server_ip IP --id ID -f FILE")
			}
			if fs.NArg() > 0 {
				return usageErrorf("unexpected arguments %q", fs.Args())
			}
			if fi, err := os.Stat(file); err != nil {
				return usageErrorf("%s", fileProblem(file, err))
			} else if !fi.Mode().IsRegular() {
				return usageErrorf("%s is not a regular file", file)
			}
			f.server = ip
			if _, _, err := net.SplitHostPort(ip); err != nil {
				f.server = net.JoinHostPort(ip, fmt.Sprint(port))
			}
			if err := checkAddr("--server_ip", f.server); err != nil {
				return err
			}
			f.user = id
			f.dialTimeout = refclient.DefaultDialTimeout
			if f.replyTimeout <= 0 {
				return usageErrorf("--timeout must be positive")
			}
			f.window, f.conns = 0, 1 // automatic window: the course server misreads pipelined blocks
			if dir, err := os.UserCacheDir(); err == nil {
				f.journalDir = filepath.Join(dir, "stepkit", "journal")
			}
			if v, ok := os.LookupEnv(envJournal); ok {
				f.journalDir = v
			}
			return runUploads(cmd, &f, []string{file}, "", false, 1)
		},
	}
	// The flags are parsed by hand (one dash or two); these only show in --help.
	var ip, id, file string
	var port int
	var json bool
	courseClientFlags(cmd.Flags(), &ip, &id, &file, &port, &json)
	cmd.Flags().Duration("timeout", refclient.DefaultReplyTimeout, "time allowed for each response")
	return cmd
}

// courseClientFlags defines the course client's flags.
func courseClientFlags(fs *pflag.FlagSet, ip, id, file *string, port *int, json *bool) {
	fs.StringVar(ip, "server_ip", "", "server IP address (or host, or host:port)")
	fs.StringVar(id, "id", "", "student id (the username)")
	fs.StringVarP(file, "file", "f", "", "file to upload")
	fs.StringVar(file, "f", "", "file to upload (the spelling most course clients use: --f FILE)")
	fs.IntVar(port, "port", spec.DefaultPort, "server port")
	fs.BoolVar(json, "json", false, "print the result as JSON")
}
