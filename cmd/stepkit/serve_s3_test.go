package main

import (
	"net"
	"strings"
	"testing"
)

// TestServeStorageFlags checks that every misuse of the storage flags is
// a one-line usage error, and that a store that cannot be reached stops
// the server at start with a network error.
func TestServeStorageFlags(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close() // nothing listens there now
	for _, tc := range []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"unknown storage", []string{"--storage", "ftp"}, exitUsage, `--storage "ftp": want local or s3`},
		{"s3 without endpoint", []string{"--storage", "s3", "--s3-bucket", "step"}, exitUsage, "--storage s3 needs --s3-endpoint and --s3-bucket"},
		{"s3 without bucket", []string{"--storage", "s3", "--s3-endpoint", downURL}, exitUsage, "--storage s3 needs --s3-endpoint and --s3-bucket"},
		{"endpoint without scheme", []string{"--storage", "s3", "--s3-endpoint", "127.0.0.1:8333", "--s3-bucket", "step"}, exitUsage, "want http://host:port or https://host:port"},
		{"endpoint of another scheme", []string{"--storage", "s3", "--s3-endpoint", "ftp://127.0.0.1", "--s3-bucket", "step"}, exitUsage, "want http://host:port"},
		{"prefix from the root", []string{"--storage", "s3", "--s3-endpoint", downURL, "--s3-bucket", "step", "--s3-prefix", "/x"}, exitUsage, "must not start with /"},
		{"s3 flags on the local folder", []string{"--s3-bucket", "step"}, exitUsage, "need --storage s3"},
		{"sync-blocks on s3", []string{"--storage", "s3", "--s3-endpoint", downURL, "--s3-bucket", "step", "--sync-blocks"}, exitUsage, "--sync-blocks is for --storage local"},
		{"non-positive s3 timeout", []string{"--storage", "s3", "--s3-endpoint", downURL, "--s3-bucket", "step", "--s3-timeout", "0s"}, exitUsage, "--s3-timeout must be positive"},
		{"bad bucket name", []string{"--storage", "s3", "--s3-endpoint", downURL, "--s3-bucket", "b"}, exitUsage, `--s3-bucket "b": Bucket name cannot be shorter than 3 characters`},
		{"store unreachable", []string{"--storage", "s3", "--s3-endpoint", downURL, "--s3-bucket", "step", "--s3-timeout", "2s"}, exitNetwork, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--root", t.TempDir()}, tc.args...)
			code, _, errs := runCLI(t, "", args...)
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			last := lines[len(lines)-1]
			if code != tc.want || !strings.Contains(last, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errs, tc.want, tc.msg)
			}
		})
	}
}
