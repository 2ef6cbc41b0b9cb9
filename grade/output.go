package grade

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
)

// maxOutput bounds what is kept of a program's output on disk: a server
// that logs every byte it reads must not fill the grader's disk.
const maxOutput = 4 << 20

// tailLines is how many of the last lines of a program's output a class
// report shows for a submission that did not start or crashed.
const tailLines = 12

// output records a program's standard output and error into a file,
// bounded, and keeps the last bytes for the report.
type output struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	dropped int64
	tail    []byte
}

func newOutput(path string) (*output, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("program output: %w", err)
	}
	return &output{f: f}, nil
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(p)
	if room := maxOutput - o.written; room > 0 {
		q := p
		if int64(len(q)) > room {
			q = q[:room]
		}
		m, _ := o.f.Write(q)
		o.written += int64(m)
		o.dropped += int64(n - m)
	} else {
		o.dropped += int64(n)
	}
	o.tail = append(o.tail, p...)
	if len(o.tail) > 16<<10 {
		o.tail = append([]byte(nil), o.tail[len(o.tail)-8<<10:]...)
	}
	return n, nil
}

// Close closes the file, noting what was left out.
func (o *output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dropped > 0 {
		fmt.Fprintf(o.f, "\n[stepkit grade: %d more bytes of output not kept]\n", o.dropped)
	}
	return o.f.Close()
}

// Tail returns the last bytes written (8 KiB at least).
func (o *output) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.ToValidUTF8(string(o.tail), "\uFFFD")
}

// Last returns the last n non-empty lines written.
func (o *output) Last(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	for _, l := range bytes.Split(o.tail, []byte("\n")) {
		s := strings.TrimRight(strings.ToValidUTF8(string(l), "\uFFFD"), "\r ")
		if strings.TrimSpace(s) != "" {
			lines = append(lines, s)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
