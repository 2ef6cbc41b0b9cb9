package grade_test

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// checkIndex checks index.html against the class: a row per student
// with its verdict, every cell link pointing at a report that exists, the
// requirements the class failed listed first, problems with their output.
func checkIndex(t *testing.T, out string, class *grade.Class) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"http://", "https://", "<link", "@import", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("index.html is not self-contained: it holds %q", bad)
		}
	}
	for _, r := range class.Results {
		if !strings.Contains(page, ">"+r.ID+"<") {
			t.Errorf("index.html has no row for %s", r.ID)
		}
		if !strings.Contains(page, `data-v="`+string(r.Verdict)+`">`+string(r.Verdict)+`<`) {
			t.Errorf("index.html does not show %s as %s", r.ID, r.Verdict)
		}
		if r.Problem != "" && !strings.Contains(page, htmlEscape(r.Problem)) {
			t.Errorf("index.html does not show %s's problem %q", r.ID, r.Problem)
		}
	}
	links := regexp.MustCompile(`href="([^"#]+)(#[^"]*)?"`).FindAllStringSubmatch(page, -1)
	if len(links) == 0 {
		t.Fatal("index.html links to no report")
	}
	for _, l := range links {
		target, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(l[1])))
		if err != nil {
			t.Errorf("index.html links to %s, which is not there", l[1])
			continue
		}
		// A cell's link lands on the case that decided it.
		if frag := strings.TrimPrefix(l[2], "#"); frag != "" && !strings.Contains(string(target), `id="`+frag+`"`) {
			t.Errorf("index.html links to %s%s, but that page has no such place", l[1], l[2])
		}
	}
	for _, r := range class.Results {
		if r.Report == nil {
			continue
		}
		for _, v := range r.Report.Requirements {
			if len(v.Broken) == 0 {
				continue
			}
			cell := regexp.MustCompile(`title="` + regexp.QuoteMeta(r.ID+" "+v.ID+":") + `[^"]*"><a href="([^"]*)"`).FindStringSubmatch(page)
			if cell == nil || !strings.HasSuffix(cell[1], "/report.html#case-"+v.Broken[0]) {
				t.Errorf("%s's %s cell links to %q, not to the case that found it broken (%s)", r.ID, v.ID, cell, v.Broken[0])
			}
		}
	}
	cols := class.Columns()
	for i := 1; i < len(cols); i++ {
		if cols[i].Failed > cols[i-1].Failed {
			t.Fatalf("requirement columns not ordered by failures: %s (%d) after %s (%d)", cols[i].ID, cols[i].Failed, cols[i-1].ID, cols[i-1].Failed)
		}
	}
	// The list of what the class got wrong is there exactly when somebody
	// failed something, and names every requirement failed.
	failed := false
	for _, r := range class.Results {
		failed = failed || len(r.Failed) > 0
	}
	i := strings.Index(page, `id="teach"`)
	if i < 0 {
		if failed {
			t.Error("index.html has no list of what the class got wrong, though some failed")
		}
		return
	}
	if !failed {
		t.Error("index.html lists what the class got wrong, though nobody failed")
	}
	teach, _, _ := strings.Cut(page[i:], "</table>")
	for _, r := range class.Results {
		for _, id := range r.Failed {
			if !strings.Contains(teach, "<td>"+id+"</td>") {
				t.Errorf("%s failed %s, but the list of what the class got wrong lacks it", r.ID, id)
			}
		}
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestIndexRendersInChromium grades a small class (a correct server, one
// with a defect and one that dies) and renders index.html in headless
// Chromium: the matrix's green and red cells must be on the screen.
func TestIndexRendersInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium")
	_, subs, _ := fixtureClass(t, false)
	var pick []grade.Submission
	for _, s := range subs {
		switch s.ID {
		case "s02-python", "s03-defect", "s05-dies":
			pick = append(pick, s)
		}
	}
	_, _, out := gradeFixture(t, pick, 3)
	shot := filepath.Join(t.TempDir(), "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--hide-scrollbars", "--window-size=1400,900",
		"--screenshot="+shot, "file://"+filepath.Join(out, "index.html"))
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	if dst := os.Getenv("STEPKIT_GRADE_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(dst, b, 0o644)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	var green, red int
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			switch {
			case near(r, 0xc9) && near(g, 0xec) && near(b, 0xc4):
				green++
			case near(r, 0xf6) && near(g, 0xb9) && near(b, 0xb5):
				red++
			}
		}
	}
	t.Logf("screenshot %v: %d green (PASS) and %d red (FAIL) pixels", bd.Size(), green, red)
	if green < 2000 || red < 100 {
		t.Fatalf("the screenshot lacks the matrix: %d PASS-green, %d FAIL-red pixels", green, red)
	}

	// Sorting, done by the page's script in Chromium: by score, both ways.
	for hash, want := range map[string]string{
		"#sort=2":      "s05-dies s03-defect s02-python",
		"#sort=2-desc": "s02-python s03-defect s05-dies",
		"#sort=0-desc": "s05-dies s03-defect s02-python",
	} {
		dom := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
			"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+filepath.Join(out, "index.html")+hash)
		dom.Env = cmd.Env
		b, err := dom.Output()
		if err != nil {
			t.Fatalf("chromium --dump-dom: %v", err)
		}
		var order []string
		for _, m := range regexp.MustCompile(`<tr[^>]*>\s*<td data-v="([^"]+)"`).FindAllStringSubmatch(string(b), -1) {
			order = append(order, m[1])
		}
		if got := strings.Join(order, " "); got != want {
			t.Errorf("index.html%s shows the students as %q, want %q", hash, got, want)
		}
	}
}

func near(a, b uint32) bool { return a+6 >= b && a <= b+6 }

// requireTool returns the path of an external tool, skipping the test
// without it unless CI=true, where a missing tool fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// isolationAvailable reports whether submissions run in namespaces here.
func isolationAvailable() (bool, string) { return grade.IsolationAvailable() }
