package judge

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
)

// requirePython returns the path of python3, the system's first (a
// version manager's shim on PATH can take seconds to start), skipping the
// test without one, except under CI, where it fails.
func requirePython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/local/bin/python3", "/usr/bin/python3"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI=true: %v", err)
		}
		t.Skipf("python3 not installed: %v", err)
	}
	return p
}

// TestTokenWait: a LOGIN is answered at once while the second has room for
// the response and the margin, else just after the next second begins.
func TestTokenWait(t *testing.T) {
	at := func(ms int) time.Time { return time.Date(2026, 3, 1, 12, 0, 7, ms*int(time.Millisecond), time.UTC) }
	for _, tt := range []struct {
		ms   int
		span time.Duration
		want time.Duration
	}{
		{0, 0, 0},
		{699, 0, 0},
		{700, 0, 300*time.Millisecond + tokenSkew},
		{999, 0, time.Millisecond + tokenSkew},
		{400, 2 * segmentPause, 0},
		{501, 2 * segmentPause, 499*time.Millisecond + tokenSkew},
		{950, 2 * segmentPause, 50*time.Millisecond + tokenSkew},
	} {
		if got := tokenWait(at(tt.ms), tt.span); got != tt.want {
			t.Errorf("at .%03d with a span of %v: wait %v, want %v", tt.ms, tt.span, got, tt.want)
		}
		// Answered after the wait, the response and the margin end within
		// the second the token is stamped with.
		start := at(tt.ms).Add(tokenWait(at(tt.ms), tt.span))
		if end := start.Add(tt.span + tokenMargin); end.Truncate(time.Second) != start.Truncate(time.Second) {
			t.Errorf("at .%03d: answered at %v, read by %v: another second", tt.ms, start.Format("05.000"), end.Format("05.000"))
		}
	}
}

// TestTokenRebuildingClient: a course client that rebuilds the token from
// its own clock after LOGIN, and gives up with "Token is incorrect!" when
// the server's differs, gets the same verdict on every run: FAIL TOKEN-5 in
// the case whose token is not stamped with its now, and PASS in the course
// flow and under cut-up responses (CLIENT-3, FRAME-4), which once failed
// whenever the pieces of the LOGIN response straddled a second.
func TestTokenRebuildingClient(t *testing.T) {
	python := requirePython(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "tokenclient.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	tp, err := ParseTemplate(python + " client.py --server_ip {host} --port {port} --id {user} -f {file}")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]conformance.Outcome{"CLIENT-5": conformance.Pass, "CLIENT-3": conformance.Pass, "TOKEN-5": conformance.Fail}
	const runs = 5
	for i := 0; i < runs; i++ {
		// Each run starts at another fifth of the second, so that over the
		// runs the LOGIN responses meet the second's end at every phase.
		now := time.Now()
		at := now.Truncate(time.Second).Add(time.Duration(i) * time.Second / runs)
		if at.Before(now) {
			at = at.Add(time.Second)
		}
		time.Sleep(at.Sub(now))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rep, err := Run(ctx, Options{Template: tp, Dir: dir, Timeout: 10 * time.Second, Isolation: Host,
			Selectors: []string{"TOKEN-5", "FRAME-4"}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Cases) != len(want) {
			t.Fatalf("run %d: %d cases, want %d", i+1, len(rep.Cases), len(want))
		}
		var got []string
		for _, c := range rep.Cases {
			got = append(got, fmt.Sprintf("%s %s", c.ID, c.Outcome))
			if c.Outcome != want[c.ID] {
				t.Errorf("run %d, case %s: %s %v, want %s", i+1, c.ID, c.Outcome, c.Broken, want[c.ID])
			}
			if c.ID != "TOKEN-5" || c.Outcome != conformance.Fail {
				continue
			}
			f := c.Findings[0]
			if strings.Join(c.Broken, ",") != "TOKEN-5" || !strings.Contains(f.Message, "Token is incorrect!") ||
				!strings.Contains(f.Message, ".20210901080000.login.") || !strings.Contains(f.Received, `"token":`) {
				t.Errorf("run %d, case TOKEN-5: broken %v, finding %+v; want TOKEN-5 alone, with the client's words and the token sent", i+1, c.Broken, f)
			}
		}
		t.Logf("run %d, started at .%03d: %s", i+1, at.Nanosecond()/1e6, strings.Join(got, ", "))
		if t.Failed() {
			dump(t, rep)
			return
		}
	}

	// The same client told to go on after complaining sends the token
	// back, and still FAILs TOKEN-5 for its verdict on the token.
	tp, err = ParseTemplate(python + " client.py --server_ip {host} --port {port} --id {user} -f {file} --go-on")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Options{Template: tp, Dir: dir, Timeout: 10 * time.Second, Isolation: Host, Selectors: []string{"TOKEN-5"}})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := rep.Case("TOKEN-5")
	if !ok || c.Outcome != conformance.Fail || len(c.Findings) != 1 || !strings.Contains(c.Findings[0].Message, `yet printed "Token is incorrect!"`) {
		t.Errorf("a client that complains and goes on: %+v", c)
		dump(t, rep)
	}
}

// TestClientZone: the client gets the judge's TZ, so that a token's time
// reads the same in both, unless the run sets its own.
func TestClientZone(t *testing.T) {
	t.Setenv("TZ", "Asia/Shanghai")
	env := strings.Join(clientEnv(&Options{}), " ")
	if !strings.Contains(env, "TZ=Asia/Shanghai") {
		t.Errorf("client environment %q: no TZ=Asia/Shanghai", env)
	}
	env2 := clientEnv(&Options{Env: []string{"TZ=UTC"}})
	if env2[len(env2)-1] != "TZ=UTC" {
		t.Errorf("client environment %q: the run's own TZ does not come last", env2)
	}
}
