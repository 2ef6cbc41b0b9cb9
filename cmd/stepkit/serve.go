package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/spec"
)

// serveOptions are the flags of stepkit serve.
type serveOptions struct {
	addr            string
	root            string
	storage         string
	s3Endpoint      string
	s3Bucket        string
	s3Prefix        string
	s3Region        string
	s3Timeout       time.Duration
	blockSize       int
	maxFileSize     string
	maxJSON         string
	maxBinary       string
	readTimeout     time.Duration
	idleTimeout     time.Duration
	writeTimeout    time.Duration
	maxConns        int
	maxConnsPerIP   int
	maxFrameMemory  string
	minFrameRate    string
	users           string
	secretFile      string
	tokenTTL        time.Duration
	quota           string
	rate            float64
	rateBurst       int
	uploadMaxAge    time.Duration
	sweepInterval   time.Duration
	fullDiskMaxAge  time.Duration
	syncBlocks      bool
	logFormat       string
	logLevel        string
	metricsAddr     string
	shutdownTimeout time.Duration
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the STEP reference server",
		Long: `Run the STEP reference server.

It speaks STEP as the course's reference server does (port 1379, blocks of
20480 bytes, the course's status codes), answers every request, and keeps
its files under --root:

  ROOT/data/USER/KEY            DATA documents (JSON)
  ROOT/file/USER/KEY            completed files
  ROOT/meta/USER/KEY            their size and MD5
  ROOT/tmp/USER/KEY/            uploads in progress (resumed after a restart)

With --storage s3 they live in an S3-compatible object store instead
(SeaweedFS, MinIO, Ceph RGW, AWS S3), under the same names below
--s3-prefix, and several servers can share the bucket behind a TCP load
balancer. Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and AWS_SESSION_TOKEN.

Course mode (the default) uses the course's login rule: the password is the
MD5 hex of the username, so ANYONE CAN LOG IN AS ANYONE, and tokens follow
the course's public recipe and never expire. Use it for classes only.
Account mode (--users FILE) checks bcrypt hashes ("username:hash" lines, as
htpasswd -B writes them) and signs expiring tokens with a server secret.

Every flag can also be set with an environment variable: STEPKIT_ and the
flag name in upper case with dashes as underscores (STEPKIT_ROOT,
STEPKIT_MAX_CONNS, ...). A flag on the command line wins.`,
		Example: `  stepkit serve --root ./store
  stepkit serve --addr 127.0.0.1:1379 --root ./store --log-format json
  stepkit serve --root /srv/step --users users.txt --secret-file secret.key --quota 1GiB --rate 200
  stepkit serve --storage s3 --s3-endpoint http://127.0.0.1:8333 --s3-bucket step --users users.txt --secret-file secret.key`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags(), "STEPKIT_")
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", fmt.Sprintf(":%d", spec.DefaultPort), "TCP address to listen on")
	f.StringVar(&o.root, "root", "step-data", "storage folder (created if missing), with --storage local")
	f.StringVar(&o.storage, "storage", "local", "where data is kept: local (the folder --root) or s3 (an S3-compatible bucket)")
	f.StringVar(&o.s3Endpoint, "s3-endpoint", "", "with --storage s3: the store's URL, http://host:port or https://host:port")
	f.StringVar(&o.s3Bucket, "s3-bucket", "", "with --storage s3: the bucket (must exist)")
	f.StringVar(&o.s3Prefix, "s3-prefix", "", "with --storage s3: prefix of every object name, e.g. step/")
	f.StringVar(&o.s3Region, "s3-region", "", "with --storage s3: the bucket's region (default us-east-1)")
	f.DurationVar(&o.s3Timeout, "s3-timeout", s3.DefaultRequestTimeout, "with --storage s3: time allowed for each request to the store")
	f.IntVar(&o.blockSize, "block-size", spec.DefaultBlockSize, "block_size of upload and download plans (1..65536); a client may ask for a larger one, up to --max-binary (STEP.md EXT-7)")
	f.StringVar(&o.maxFileSize, "max-file-size", "4GiB", "largest file a FILE SAVE may announce")
	f.StringVar(&o.maxJSON, "max-json", "1MiB", "largest JSON part of a frame")
	f.StringVar(&o.maxBinary, "max-binary", "1MiB", "largest binary part of a frame, and the largest block_size a client may ask for")
	f.DurationVar(&o.readTimeout, "read-timeout", refserver.DefaultReadTimeout, "time to receive a frame once it has begun")
	f.DurationVar(&o.idleTimeout, "idle-timeout", refserver.DefaultIdleTimeout, "time a connection may wait between requests")
	f.DurationVar(&o.writeTimeout, "write-timeout", refserver.DefaultWriteTimeout, "time to send one response")
	f.IntVar(&o.maxConns, "max-conns", refserver.DefaultMaxConns, "concurrent connections (-1: no cap); at the cap, a new one takes the place of a slow or idle one of the address holding the most, or gets ERROR/503")
	f.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "concurrent connections from one address (0: no cap); more get ERROR/503")
	f.StringVar(&o.maxFrameMemory, "max-frame-memory", "256MiB", "memory all connections together may hold in frames beyond 64KiB each; more waits")
	f.StringVar(&o.minFrameRate, "min-frame-rate", "0", "bytes per second a frame must keep arriving at after --read-timeout, e.g. 16KiB (0: --read-timeout is the deadline of a whole frame)")
	f.StringVar(&o.users, "users", "", "users file (username:bcrypt-hash lines): account mode")
	f.StringVar(&o.secretFile, "secret-file", "", "account mode token secret; created with a random secret if missing (default: a new secret at each start)")
	f.DurationVar(&o.tokenTTL, "token-ttl", refserver.DefaultTokenTTL, "account mode token lifetime")
	f.StringVar(&o.quota, "quota", "0", "bytes each user may store, e.g. 500MiB (0: no quota); excess gets 413")
	f.Float64Var(&o.rate, "rate", 0, "requests per second per user (0: no limit); excess gets 429")
	f.IntVar(&o.rateBurst, "rate-burst", 0, "burst of the rate limit (default: the rate)")
	f.DurationVar(&o.uploadMaxAge, "upload-max-age", refserver.DefaultUploadMaxAge, "remove uploads idle for longer (-1s: never)")
	f.DurationVar(&o.sweepInterval, "sweep-interval", 0, "how often abandoned uploads are looked for (default: min(10m, max-age/2))")
	f.DurationVar(&o.fullDiskMaxAge, "full-disk-upload-max-age", refserver.DefaultFullDiskUploadMaxAge, "when a FILE SAVE finds the disk full, remove uploads idle for longer to make room (-1s: never)")
	f.BoolVar(&o.syncBlocks, "sync-blocks", false, "fsync every block before answering (survives power loss; slower)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, time given to requests in flight")
	return cmd
}

// flagsFromEnv sets every flag not given on the command line from its
// environment variable, if set.
func flagsFromEnv(fs *pflag.FlagSet, prefix string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usageErrorf("environment variable %s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}

// parseBytes reads a byte count: a plain integer or one with a suffix
// (K, M, G, T for powers of 1000; KiB, MiB, GiB, TiB for powers of 1024).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// serveConfig turns the flags into a refserver.Config.
func serveConfig(o serveOptions, logw io.Writer) (refserver.Config, error) {
	cfg := refserver.Config{
		Root:                 o.root,
		BlockSize:            o.blockSize,
		ReadTimeout:          o.readTimeout,
		IdleTimeout:          o.idleTimeout,
		WriteTimeout:         o.writeTimeout,
		MaxConns:             o.maxConns,
		MaxConnsPerIP:        o.maxConnsPerIP,
		TokenTTL:             o.tokenTTL,
		RateLimit:            o.rate,
		RateBurst:            o.rateBurst,
		UploadMaxAge:         o.uploadMaxAge,
		SweepInterval:        o.sweepInterval,
		FullDiskUploadMaxAge: o.fullDiskMaxAge,
		SyncBlocks:           o.syncBlocks,
	}
	switch o.storage {
	case "local":
		if o.root == "" {
			return cfg, usageErrorf("--root must not be empty")
		}
		if o.s3Endpoint != "" || o.s3Bucket != "" || o.s3Prefix != "" || o.s3Region != "" {
			return cfg, usageErrorf("--s3-endpoint, --s3-bucket, --s3-prefix and --s3-region need --storage s3")
		}
	case "s3":
		if o.s3Endpoint == "" || o.s3Bucket == "" {
			return cfg, usageErrorf("--storage s3 needs --s3-endpoint and --s3-bucket")
		}
		if o.syncBlocks {
			return cfg, usageErrorf("--sync-blocks is for --storage local: the object store decides when data is durable")
		}
		if o.s3Timeout <= 0 {
			return cfg, usageErrorf("--s3-timeout must be positive")
		}
		if u, err := url.Parse(o.s3Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return cfg, usageErrorf("--s3-endpoint %q: want http://host:port or https://host:port", o.s3Endpoint)
		}
		if err := s3utils.CheckValidBucketName(o.s3Bucket); err != nil {
			return cfg, usageErrorf("--s3-bucket %q: %v", o.s3Bucket, err)
		}
		if strings.HasPrefix(o.s3Prefix, "/") {
			return cfg, usageErrorf("--s3-prefix %q must not start with /", o.s3Prefix)
		}
	default:
		return cfg, usageErrorf("--storage %q: want local or s3", o.storage)
	}
	if o.blockSize < 1 || o.blockSize > spec.MaxBlockSize {
		return cfg, usageErrorf("--block-size %d is outside 1..%d", o.blockSize, spec.MaxBlockSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-timeout", o.readTimeout}, {"idle-timeout", o.idleTimeout}, {"write-timeout", o.writeTimeout}, {"token-ttl", o.tokenTTL}} {
		if d.v <= 0 {
			return cfg, usageErrorf("--%s must be positive", d.name)
		}
	}
	if o.maxConns == 0 {
		return cfg, usageErrorf("--max-conns must not be 0 (use -1 for no cap)")
	}
	if o.maxConnsPerIP < 0 {
		return cfg, usageErrorf("--max-conns-per-ip must not be negative (0: no cap)")
	}
	if o.rate < 0 || o.rateBurst < 0 {
		return cfg, usageErrorf("--rate and --rate-burst must not be negative")
	}
	sizes := []struct {
		name string
		v    string
		max  int64
		dst  func(int64)
	}{
		{"max-file-size", o.maxFileSize, 1 << 62, func(n int64) { cfg.MaxFileSize = n }},
		{"max-json", o.maxJSON, 1<<32 - 1, func(n int64) { cfg.Limits.MaxJSON = uint32(n) }},
		{"max-binary", o.maxBinary, 1<<32 - 1, func(n int64) { cfg.Limits.MaxBinary = uint32(n) }},
		{"quota", o.quota, 1 << 62, func(n int64) { cfg.Quota = n }},
		{"max-frame-memory", o.maxFrameMemory, 1 << 62, func(n int64) { cfg.MaxFrameMemory = n }},
		{"min-frame-rate", o.minFrameRate, 1 << 62, func(n int64) { cfg.MinFrameRate = n }},
	}
	for _, sz := range sizes {
		n, err := parseBytes(sz.v)
		if err != nil {
			return cfg, usageErrorf("--%s: %v", sz.name, err)
		}
		if n > sz.max || (n == 0 && sz.name != "quota" && sz.name != "min-frame-rate") {
			return cfg, usageErrorf("--%s %s is out of range", sz.name, sz.v)
		}
		sz.dst(n)
	}
	logger, err := newLogger(o.logFormat, o.logLevel, logw)
	if err != nil {
		return cfg, err
	}
	cfg.Logger = logger
	if o.users != "" {
		hashes, err := refserver.ReadUsersFile(o.users)
		if err != nil {
			return cfg, usageErrorf("--users: %v", err)
		}
		var secret []byte
		if o.secretFile != "" {
			if secret, err = loadSecret(o.secretFile); err != nil {
				return cfg, usageErrorf("--secret-file: %v", err)
			}
		}
		if cfg.Accounts, err = refserver.NewAccounts(hashes, secret); err != nil {
			return cfg, usageErrorf("--users: %v", err)
		}
	} else if o.secretFile != "" {
		return cfg, usageErrorf("--secret-file needs --users (course mode tokens are not signed)")
	}
	return cfg, nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", format)
}

// loadSecret reads the token secret, or creates the file with a new random
// secret (hex, mode 0600) when it does not exist.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		text := hex.EncodeToString(secret)
		if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
			return nil, err
		}
		return []byte(text), nil
	}
	if err != nil {
		return nil, err
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < 16 {
		return nil, fmt.Errorf("%s holds %d bytes, want at least 16", path, len(secret))
	}
	return secret, nil
}

func runServe(ctx context.Context, o serveOptions, logw io.Writer) error {
	cfg, err := serveConfig(o, logw)
	if err != nil {
		return err
	}
	log := cfg.Logger
	// Listen first: a port in use is reported before anything has started.
	l, err := net.Listen("tcp", o.addr)
	if err != nil {
		return withExit(exitNetwork, fmt.Errorf("listen on %s: %w", o.addr, err))
	}
	defer l.Close() // Serve closes it too; this covers the failures below
	var metricsSrv *http.Server
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if cfg.Metrics, err = refserver.NewMetrics(reg); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		ml, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return withExit(exitNetwork, fmt.Errorf("metrics listener: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(ml)
		log.Info("metrics", "url", "http://"+ml.Addr().String()+"/metrics")
	}
	if o.storage == "s3" {
		st, err := s3.Open(ctx, s3.Config{Endpoint: o.s3Endpoint, Bucket: o.s3Bucket, Prefix: o.s3Prefix,
			Region: o.s3Region, RequestTimeout: o.s3Timeout})
		if err != nil {
			return withExit(exitNetwork, fmt.Errorf("open the object store: %w", err))
		}
		cfg.Storage = st
	}
	srv, err := refserver.New(cfg)
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	if srv.Mode() == "course" {
		log.Warn("course mode: the password of every user is the MD5 of the username, so anyone can log in as anyone; use --users for real accounts")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", o.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if metricsSrv != nil {
		metricsSrv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: connections still open after %s were closed: %w", o.shutdownTimeout, err)
	}
	<-served
	return nil
}
