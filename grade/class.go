package grade

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Submission is one student's program: a folder and how to run it.
type Submission struct {
	ID    string // the student's id: the folder's name, or the roster's id
	Dir   string // absolute path of the folder
	Run   string // command template; "" means the class's --run
	Stdin string // fed to the program's standard input; "" means none
}

// validID is what a student id may look like: it names a folder of the
// reports and a row of the class sheet.
var validID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`) })

// Discover lists the sub-folders of dir as submissions, sorted by id.
// Hidden folders and plain files are not submissions.
func Discover(dir string) ([]Submission, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("class folder: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var subs []Submission
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := os.Stat(filepath.Join(abs, e.Name())) // follows a link to a folder
		if err != nil || !info.IsDir() {
			continue
		}
		if !validID().MatchString(e.Name()) {
			return nil, fmt.Errorf("class folder: %q is not a usable student id (letters, digits, . _ @ + -)", e.Name())
		}
		subs = append(subs, Submission{ID: e.Name(), Dir: filepath.Join(abs, e.Name())})
	}
	if len(subs) == 0 {
		return nil, fmt.Errorf("class folder %s holds no submission folder", dir)
	}
	return subs, nil
}

// ReadRoster reads a roster CSV with the header id,path,run,stdin (path,
// run and stdin may be empty or absent). A relative path is taken from
// the class folder; an empty one is the folder named by the id. In stdin,
// \n stands for a newline.
func ReadRoster(r io.Reader, classDir string) ([]Submission, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("roster: empty, want a header line id,path,run,stdin")
		}
		return nil, fmt.Errorf("roster: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch h {
		case "id", "path", "run", "stdin":
			if _, dup := col[h]; dup {
				return nil, fmt.Errorf("roster: column %q twice in the header", h)
			}
			col[h] = i
		default:
			return nil, fmt.Errorf("roster: unknown column %q (columns: id,path,run,stdin)", h)
		}
	}
	if _, ok := col["id"]; !ok {
		return nil, errors.New("roster: the header has no id column (columns: id,path,run,stdin)")
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	var subs []Submission
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("roster: %w", err)
		}
		line, _ := cr.FieldPos(0)
		id := get(rec, "id")
		if !validID().MatchString(id) {
			return nil, fmt.Errorf("roster line %d: %q is not a usable student id (letters, digits, . _ @ + -)", line, id)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("roster line %d: id %s already on line %d", line, id, prev)
		}
		seen[id] = line
		p := get(rec, "path")
		if p == "" {
			p = id
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(classDir, p)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		if info, err := os.Stat(abs); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("roster line %d: %s: no such folder", line, abs)
		}
		subs = append(subs, Submission{ID: id, Dir: abs, Run: get(rec, "run"),
			Stdin: strings.ReplaceAll(get(rec, "stdin"), `\n`, "\n")})
	}
	if len(subs) == 0 {
		return nil, errors.New("roster: no student in it")
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].ID < subs[j].ID })
	return subs, nil
}

// Expand fills a command template's placeholders: {port}, {dir} and any
// other the caller passes. Values are shell-quoted: the template is run
// by /bin/sh -c, so a template may cd, set variables or use a pipe.
func Expand(template string, values map[string]string) (string, error) {
	var b strings.Builder
	rest := template
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		name := rest[i+1 : i+j]
		v, ok := values[name]
		if !ok {
			if regexp.MustCompile(`^[a-z_]+$`).MatchString(name) {
				keys := make([]string, 0, len(values))
				for k := range values {
					keys = append(keys, "{"+k+"}")
				}
				sort.Strings(keys)
				return "", fmt.Errorf("template %q: unknown placeholder {%s} (known: %s)", template, name, strings.Join(keys, " "))
			}
			b.WriteString(rest[:i+j+1]) // not a placeholder: shell braces
			rest = rest[i+j+1:]
			continue
		}
		b.WriteString(rest[:i])
		b.WriteString(shellQuote(v))
		rest = rest[i+j+1:]
	}
}

func shellQuote(s string) string {
	if s != "" && regexp.MustCompile(`^[A-Za-z0-9_./:@%+=-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
