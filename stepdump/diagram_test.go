package stepdump_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/stepdump"
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
	shot := filepath.Join(t.TempDir(), "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--hide-scrollbars", "--window-size=1240,900",
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
