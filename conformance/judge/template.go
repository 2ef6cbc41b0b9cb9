package judge

import (
	"errors"
	"fmt"
	"strings"
)

// CourseTemplate is the course sheet's spelling of a client's command line.
const CourseTemplate = "python3 client.py --server_ip {host} --id {user} --f {file}"

// Placeholders a template may use.
var placeholders = []string{"{host}", "{port}", "{user}", "{file}", "{dir}"}

// Template is a client's command line with placeholders, split into words
// as a POSIX shell would split it (quotes and backslashes), without a shell.
type Template struct {
	text  string
	words []string
}

// ParseTemplate splits text into words and checks its placeholders. {file}
// is required: the judge chooses the file the client uploads.
func ParseTemplate(text string) (Template, error) {
	words, err := splitWords(text)
	if err != nil {
		return Template{}, fmt.Errorf("client template %q: %w", text, err)
	}
	if len(words) == 0 {
		return Template{}, errors.New("client template is empty")
	}
	t := Template{text: text, words: words}
	for _, w := range words {
		rest := w
		for {
			i := strings.IndexByte(rest, '{')
			if i < 0 {
				break
			}
			j := strings.IndexByte(rest[i:], '}')
			if j < 0 {
				break
			}
			ph := rest[i : i+j+1]
			if isPlaceholderName(ph) && !known(ph) {
				return Template{}, fmt.Errorf("client template %q: unknown placeholder %s (known: %s)", text, ph, strings.Join(placeholders, " "))
			}
			rest = rest[i+j+1:]
		}
	}
	if !t.Has("{file}") {
		return Template{}, fmt.Errorf("client template %q has no {file}: the judge chooses the file the client uploads", text)
	}
	return t, nil
}

// isPlaceholderName reports whether s looks like {name}: lower-case letters.
func isPlaceholderName(s string) bool {
	if len(s) < 3 {
		return false
	}
	for _, r := range s[1 : len(s)-1] {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

func known(ph string) bool {
	for _, p := range placeholders {
		if p == ph {
			return true
		}
	}
	return false
}

// String is the template as given.
func (t Template) String() string { return t.text }

// Has reports whether the template uses the placeholder ph ("{user}").
func (t Template) Has(ph string) bool {
	for _, w := range t.words {
		if strings.Contains(w, ph) {
			return true
		}
	}
	return false
}

// Features lists the placeholders the template uses, in a fixed order.
func (t Template) Features() []string {
	var out []string
	for _, p := range placeholders {
		if t.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// Expand substitutes values (by placeholder) into every word. Values are
// inserted as they are: a value never splits a word.
func (t Template) Expand(values map[string]string) []string {
	pairs := make([]string, 0, 2*len(values))
	for k, v := range values {
		pairs = append(pairs, k, v)
	}
	r := strings.NewReplacer(pairs...)
	out := make([]string, len(t.words))
	for i, w := range t.words {
		out[i] = r.Replace(w)
	}
	return out
}

// splitWords splits s into words: blanks separate words, '…' quotes
// everything, "…" quotes everything but \" \\ \$ \`, and \ outside quotes
// escapes the next character.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("a backslash ends the template")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
