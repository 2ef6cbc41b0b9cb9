package stepdump_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

func writeDiagram(t *testing.T, capture string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "ladder.html")
	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := stepdump.Config{Name: capture, Diagram: out, Summary: true}
	if _, err := stepdump.Run(context.Background(), f, &bytes.Buffer{}, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, string(b)
}

// TestDiagramContent checks the page is self-contained and holds one arrow
// per message, errors marked.
func TestDiagramContent(t *testing.T) {
	_, page := writeDiagram(t, filepath.Join(capturesDir, "diagnoses.pcap"))
	for _, bad := range []string{"<script", "http://", "https://", "<link", "@import"} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("diagram is not self-contained: it holds %q", bad)
		}
	}
	if n := strings.Count(page, `marker-end=`); n != 16 {
		t.Errorf("diagram has %d arrows, want 16 (one per message)", n)
	}
	for _, want := range []string{"UPLOAD FILE 406", "3BODY DANGEROUS 333", "wrong-block-size", "request-never-answered",
		"response-without-request", "upload-never-completed", `class="bad"`, "client 10.0.0.2:40001", "server 10.0.0.1:1379"} {
		if !strings.Contains(page, want) {
			t.Errorf("diagram lacks %q", want)
		}
	}
	_, multi := writeDiagram(t, filepath.Join(capturesDir, "multi.pcap"))
	if n := strings.Count(multi, "<h2>Connection c"); n != 2 {
		t.Errorf("multi.pcap diagram has %d connections, want 2", n)
	}
}

// TestDiagramRendersInChromium renders the ladder of a capture with
// headless Chromium and checks the screenshot shows the lanes and arrows
// in their colours.
func TestDiagramRendersInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium")
	page, _ := writeDiagram(t, filepath.Join(capturesDir, "diagnoses.pcap"))
	img := screenshot(t, chromium, page, 1240, 900)
	// Count pixels of the request blue, the response green and the error
	// red: a page that failed to render is white or shows an error text.
	var blue, green, red int
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			switch near(img, x, y) {
			case 'b':
				blue++
			case 'g':
				green++
			case 'r':
				red++
			}
		}
	}
	t.Logf("screenshot %v: %d blue, %d green, %d red pixels", bounds.Size(), blue, green, red)
	if blue < 200 || green < 200 || red < 200 {
		t.Fatalf("screenshot lacks the ladder's arrows: %d blue, %d green, %d red pixels", blue, green, red)
	}
}

// screenshot renders page in headless Chromium at the given window size.
func screenshot(t *testing.T, chromium, page string, w, h int) image.Image {
	t.Helper()
	shot := filepath.Join(t.TempDir(), "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--hide-scrollbars", fmt.Sprintf("--window-size=%d,%d", w, h),
		"--screenshot="+shot, "file://"+page)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if dst := os.Getenv("STEPDUMP_SCREENSHOT"); dst != "" {
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
	return img
}

// near classifies a pixel as one of the diagram's arrow colours.
func near(img image.Image, x, y int) byte {
	r, g, b, _ := img.At(x, y).RGBA()
	r, g, b = r>>8, g>>8, b>>8
	close := func(cr, cg, cb uint32) bool {
		d := func(a, b uint32) uint32 {
			if a > b {
				return a - b
			}
			return b - a
		}
		return d(r, cr) < 40 && d(g, cg) < 40 && d(b, cb) < 40
	}
	switch {
	case close(0x1f, 0x6f, 0xb2):
		return 'b'
	case close(0x2c, 0x8a, 0x3c):
		return 'g'
	case close(0xc6, 0x28, 0x28):
		return 'r'
	}
	return 0
}

// longTransfer writes a capture of one upload of blocks blocks of 64
// bytes, block errAt answered 500 and sent again, and returns its path.
func longTransfer(t *testing.T, blocks, errAt int) string {
	t.Helper()
	c := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40100"), netip.MustParseAddrPort("10.0.0.1:1379"), time.Unix(1_700_000_000, 0), 0)
	s := capgen.NewSession(c, "long")
	c.Handshake()
	s.Login()
	data := capgen.Pattern(blocks*64-10, 4) // the last block is shorter
	p := s.SavePlan("long.bin", int64(len(data)), 64)
	for i := int64(0); i < p.Total; i++ {
		if i == int64(errAt) {
			s.Do(s.UploadReq(p, i, data), capgen.Error(spec.OpUpload, spec.TypeFile, spec.StatusInternalError, "Storage failure: write block."))
		}
		s.Do(s.UploadReq(p, i, data), s.UploadResp(p, i, data))
	}
	s.Bye()
	c.Close()
	path := filepath.Join(t.TempDir(), "long.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := capgen.NewWriter(f, capgen.Ethernet, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(c); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDiagramCollapsesRuns: a ladder of 10 000 blocks shows the runs of
// identical exchanges as one row each, which expands on click onto its
// exchanges, with the error between them and the first and last
// exchanges drawn.
func TestDiagramCollapsesRuns(t *testing.T) {
	_, page := writeDiagram(t, longTransfer(t, 10000, 5000))
	for _, want := range []string{
		"UPLOAD FILE blocks 1–4998: 4998 × 200",    // between the first exchange and the last before the error
		"UPLOAD FILE blocks 5001–9997: 4997 × 200", // after the block sent again, before the last two
		"#6 UPLOAD FILE 200 key=long.bin block 0",  // the first exchange
		"UPLOAD FILE 200 key=long.bin block 4999",  // the last before the error
		"UPLOAD FILE 500 &#34;Storage failure: write block.&#34;",
		"UPLOAD FILE 200 key=long.bin block 9999", // the last
		"BYE AUTH 200",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("diagram lacks %q", want)
		}
	}
	if n := strings.Count(page, `<details class="run">`); n != 2 {
		t.Errorf("%d collapsed runs, want 2", n)
	}
	// Drawn at the top level, outside the runs: a few dozen arrows.
	top := page
	for {
		i := strings.Index(top, `<svg xmlns="http://www.w3.org/2000/svg" class="expanded"`)
		if i < 0 {
			break
		}
		j := strings.Index(top[i:], "</svg>")
		top = top[:i] + top[i+j+len("</svg>"):]
	}
	if n := strings.Count(top, "marker-end="); n > 30 {
		t.Errorf("%d arrows drawn outside the collapsed runs", n)
	}
	// Each run keeps up to 2000 rows for its expansion, and says how many
	// more there were.
	if n := strings.Count(page, "marker-end="); n > 30+2*2000 {
		t.Errorf("%d arrows in all", n)
	}
	if !strings.Contains(page, "more exchanges of this run not kept") {
		t.Error("a run longer than its expansion does not say so")
	}
	reliability.Record(t, reliability.Row{Area: "decoder", Times: 1,
		Input:   "a ladder diagram of a 10 000-block upload with a 500 in the middle",
		Outcome: "two collapsed rows that expand on click; the error, the first and the last exchanges drawn",
		Lost:    "nothing"})
}

// TestLongDiagramRendersInChromium renders the 10 000-block ladder in
// headless Chromium: the whole connection, collapsed runs included, fits
// in a window's height, with request, response and error colours drawn.
func TestLongDiagramRendersInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium")
	page, _ := writeDiagram(t, longTransfer(t, 10000, 5000))
	img := screenshot(t, chromium, page, 1240, 2400)
	var blue, green, red, lowest int
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			switch near(img, x, y) {
			case 'b':
				blue++
			case 'g':
				green++
			case 'r':
				red++
			default:
				continue
			}
			lowest = y
		}
	}
	t.Logf("screenshot %v: %d blue, %d green, %d red pixels, the lowest at y=%d", bounds.Size(), blue, green, red, lowest)
	if blue < 200 || green < 200 || red < 100 {
		t.Fatalf("screenshot lacks the ladder's arrows: %d blue, %d green, %d red pixels", blue, green, red)
	}
	if lowest > 1500 {
		t.Fatalf("the ladder of 10 000 blocks is drawn down to y=%d: not collapsed", lowest)
	}
	// Opened (as a click opens it), the first run shows its exchanges.
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	opened := filepath.Join(t.TempDir(), "opened.html")
	if err := os.WriteFile(opened, []byte(strings.Replace(string(b), `<details class="run">`, `<details class="run" open>`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	img = screenshot(t, chromium, opened, 1240, 3000)
	blue, green = 0, 0
	for y := 2000; y < img.Bounds().Max.Y; y++ {
		for x := 0; x < img.Bounds().Max.X; x++ {
			switch near(img, x, y) {
			case 'b':
				blue++
			case 'g':
				green++
			}
		}
	}
	if blue < 200 || green < 200 {
		t.Fatalf("an opened run shows no exchanges below y=2000: %d blue, %d green pixels", blue, green)
	}
}
