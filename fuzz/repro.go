package fuzz

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"
)

// ReproFormat is the version of the reproducer file format.
const ReproFormat = 1

// Repro is a reproducer file: the steps to send and the failure they
// show.
type Repro struct {
	Format        int       `json:"stepkit_fuzz_reproducer"`
	Finding       Violation `json:"finding"`
	ReadTimeoutMS int64     `json:"read_timeout_ms"`
	Steps         []Step    `json:"steps"`
}

// WriteRepro writes a finding's reproducers into dir as NAME.json and
// NAME.py and records their names in fd.Files (relative to dir).
func WriteRepro(dir, name string, fd *Finding, readTimeout time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reproducer folder: %w", err)
	}
	r := Repro{Format: ReproFormat, Finding: fd.Violation, ReadTimeoutMS: readTimeout.Milliseconds(), Steps: fd.Repro.Steps}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write reproducer: %w", err)
	}
	py, err := pythonScript(name, fd, b)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".py"), py, 0o755); err != nil {
		return fmt.Errorf("write reproducer: %w", err)
	}
	fd.Files = Files{JSON: name + ".json", Python: name + ".py"}
	return nil
}

// ReadRepro reads a reproducer file.
func ReadRepro(path string) (*Repro, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Repro
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: not a reproducer: %w", path, err)
	}
	if r.Format != ReproFormat {
		return nil, fmt.Errorf("%s: not a stepkit fuzz reproducer (format %d, want %d)", path, r.Format, ReproFormat)
	}
	if len(r.Steps) == 0 {
		return nil, fmt.Errorf("%s: no steps", path)
	}
	return &r, nil
}

// ReplayResult is what a replay saw.
type ReplayResult struct {
	Shown      bool        // the reproducer's failure showed again
	Violations []Violation // everything the run broke
	Answers    []Answer
}

// Replay plays a reproducer against target with fresh users and judges
// the answers as a fuzzing run does.
func Replay(ctx context.Context, r *Repro, target Target, readTimeout time.Duration) (*ReplayResult, error) {
	if readTimeout <= 0 {
		readTimeout = time.Duration(r.ReadTimeoutMS) * time.Millisecond
	}
	f := &fuzzer{o: Options{Target: target, MemoryBound: DefaultMemoryBound}, exec: &Exec{Target: target, ReadTimeout: readTimeout}, seen: map[string]bool{}}
	var nb [4]byte
	for i := range nb {
		nb[i] = byte(time.Now().UnixNano() >> (8 * i))
	}
	f.nonce = fmt.Sprintf("r%x", nb)
	f.res = &Result{}
	in := &Input{Steps: r.Steps}
	if r.Finding.Oracle == OracleMemory {
		f.baseRSS = target.RSS()
	}
	vs, tr, _ := f.try(ctx, in, false)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &ReplayResult{Violations: vs, Answers: answers(in, tr)}
	for _, v := range vs {
		if v.Key() == r.Finding.Key() {
			out.Shown = true
		}
	}
	return out, nil
}

//go:embed repro.py.tmpl
var pythonTemplate string

var pyTmpl = sync.OnceValue(func() *template.Template { return template.Must(template.New("py").Parse(pythonTemplate)) })

func pythonScript(name string, fd *Finding, reproJSON []byte) ([]byte, error) {
	var buf bytes.Buffer
	data := struct {
		Name, Summary, Requirement, Expected string
		Repro                                string
		Base64                               bool
	}{
		Name:        name,
		Summary:     strings.ReplaceAll(fd.Message, `"""`, `'''`),
		Requirement: fd.Requirement + " (" + fd.Level + "): " + strings.ReplaceAll(fd.Text, `"""`, `'''`),
		Expected:    strings.ReplaceAll(fd.Expected, `"""`, `'''`),
		Repro:       string(reproJSON),
	}
	// The steps go in as a raw string, readable, unless they hold what
	// would end one.
	if strings.Contains(data.Repro, "'''") {
		data.Repro, data.Base64 = base64.StdEncoding.EncodeToString(reproJSON), true
	}
	if err := pyTmpl().Execute(&buf, data); err != nil {
		return nil, errors.New("python reproducer: " + err.Error())
	}
	return buf.Bytes(), nil
}
