package interop_test

import (
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/interop"
)

// outcomes is a run's verdicts, cell by cell and scenario by scenario,
// with the seconds a stall lasted left out.
func outcomes(m *interop.Matrix) map[string]string {
	secs := regexp.MustCompile(`[0-9.]+ s\b`)
	out := map[string]string{}
	for _, row := range m.Cells {
		for _, c := range row {
			for _, r := range c.Scenarios {
				out[c.Server+" × "+c.Client+" "+r.Scenario] = fmt.Sprintf("%s %s %s %s", r.Outcome, r.Side, r.Requirement, secs.ReplaceAllString(r.Blame, "N s"))
			}
		}
	}
	return out
}

// TestSameOutcomesAnyJobs runs the fixture class one pair at a time and
// many at once: every verdict and blame is the same.
func TestSameOutcomesAnyJobs(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	srv, cli := class(t, dir, fixtureServers[1:3], fixtureClients[1:])
	scen := []interop.Scenario{interop.Scenarios()[0], interop.Scenarios()[2]}
	var runs []map[string]string
	for _, jobs := range []int{1, interop.DefaultJobs()} {
		m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Jobs: jobs,
			Out: filepath.Join(dir, fmt.Sprintf("out-%d", jobs)), Scenarios: scen, ClientTimeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, outcomes(m))
	}
	fails := 0
	for k, v := range runs[0] {
		if runs[1][k] != v {
			t.Errorf("%s: --jobs 1: %q, --jobs %d: %q", k, v, interop.DefaultJobs(), runs[1][k])
		}
		if strings.HasPrefix(v, "FAIL") {
			fails++
		}
	}
	if len(runs[0]) != len(runs[1]) || fails == 0 {
		t.Fatalf("runs of %d and %d verdicts, %d failing: the class's defects did not show", len(runs[0]), len(runs[1]), fails)
	}
}

// TestMatrixInChromium renders interop.html in headless Chromium, sorted
// by pairs passed: the screenshot shows the three colours of the fixture
// class (pass, client at fault, server at fault), and the sorted page
// keeps stepkit's own row first and orders the rest by pairs passed.
func TestMatrixInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	requireTool(t, err == nil, "chromium is not installed")
	m, out := fixtureMatrix(t)
	page := "file://" + filepath.Join(out, "interop.html") + "#sorted"
	shot := filepath.Join(t.TempDir(), "matrix.png")
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
			"--disable-background-networking", "--no-first-run", "--disable-dev-shm-usage",
			"--user-data-dir=" + t.TempDir(), "--hide-scrollbars", "--window-size=1100,700"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return b
	}
	run("--screenshot="+shot, page)
	if dst := os.Getenv("INTEROP_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	colours := map[string][3]uint32{"pass": {0xb9, 0xe7, 0xb0}, "client": {0xf7, 0xcf, 0x8a}, "server": {0xf3, 0xa6, 0xa0}}
	count := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(r>>8, c[0]) && near(g>>8, c[1]) && near(bl>>8, c[2]) {
					count[name]++
				}
			}
		}
	}
	t.Logf("screenshot %v: %v", b.Size(), count)
	// A cell is about 32×27 pixels; the legend has one swatch of each.
	if count["pass"] < 15*500 || count["client"] < 5*500 || count["server"] < 500 {
		t.Errorf("the matrix is not drawn as the run found it: %v pixels", count)
	}
	dom := string(run("--dump-dom", page))
	rows := regexp.MustCompile(`<tr data-passed="(\d+)" data-ref="(true|false)">`).FindAllStringSubmatch(dom, -1)
	if len(rows) != len(m.Servers) || rows[0][2] != "true" {
		t.Fatalf("sorted rows: %v", rows)
	}
	for i := 2; i < len(rows); i++ {
		if rows[i-1][1] < rows[i][1] {
			t.Errorf("sorted rows out of order: %v", rows)
		}
	}
}

func near(a, b uint32) bool {
	if a > b {
		return a-b < 6
	}
	return b-a < 6
}

// BenchmarkInterop runs a fixture class (2 servers × 3 clients and
// stepkit's own, 2 scenarios) one pair after another and with the default
// jobs; the speedup is the ratio of the two.
func BenchmarkInterop(b *testing.B) {
	requireSandbox(b)
	dir := b.TempDir()
	srv, cli := class(b, dir, []fixture{fixtureServers[0], fixtureServers[1]}, fixtureClients[:3])
	scen := []interop.Scenario{interop.Scenarios()[0], interop.Scenarios()[1]}
	var serial, parallel time.Duration
	for _, bc := range []struct {
		name string
		jobs int
		d    *time.Duration
	}{{"serial", 1, &serial}, {"jobs", interop.DefaultJobs(), &parallel}} {
		b.Run(bc.name, func(b *testing.B) {
			start := time.Now()
			n := 0
			for b.Loop() {
				m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Jobs: bc.jobs,
					Out: filepath.Join(dir, "out"), Scenarios: scen})
				if err != nil {
					b.Fatal(err)
				}
				n = len(m.Servers) * len(m.Clients)
			}
			*bc.d = time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(bc.d.Milliseconds())/float64(n), "ms/pair")
		})
	}
	if serial > 0 && parallel > 0 {
		b.Logf("%d jobs: %.2f× the speed of one pair at a time (%.1fs against %.1fs a run)", interop.DefaultJobs(),
			serial.Seconds()/parallel.Seconds(), parallel.Seconds(), serial.Seconds())
	}
}

// TestSharedServersSameOutcomes runs the fixture class with a server
// process shared by the cells of a segment, the default, and with one
// started for every cell: every verdict and blame is the same.
func TestSharedServersSameOutcomes(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	srv, cli := class(t, dir, fixtureServers, fixtureClients)
	scen := []interop.Scenario{interop.Scenarios()[0], interop.Scenarios()[2]}
	var runs []map[string]string
	for _, fresh := range []bool{false, true} {
		m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, FreshServers: fresh,
			Out: filepath.Join(dir, fmt.Sprintf("out-%v", fresh)), Scenarios: scen, ClientTimeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		shared := 0
		for _, row := range m.Cells {
			for _, c := range row {
				if len(c.ServedBefore) > 0 || c.Rerun != "" {
					shared++
				}
			}
		}
		if fresh && shared > 0 || !fresh && shared == 0 {
			t.Errorf("fresh servers %v: %d cells met a server that had served others", fresh, shared)
		}
		runs = append(runs, outcomes(m))
	}
	for k, v := range runs[0] {
		if runs[1][k] != v {
			t.Errorf("%s: shared server: %q, fresh server: %q", k, v, runs[1][k])
		}
	}
	if len(runs[0]) != len(runs[1]) {
		t.Errorf("%d and %d verdicts", len(runs[0]), len(runs[1]))
	}
}
