package fuzz

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

// Actions of a Step.
const (
	ActSend = ""      // send a frame
	ActShut = "shut"  // half-close: shut the write side of the connection
	ActDrop = "drop"  // close the connection at once
	ActWait = "pause" // let the server run a moment (after a drop or shut)
)

// Step is one thing an input does on one of its connections. Its JSON
// text may hold placeholders, resolved when it is sent: ${user:N} is the
// run's name for user N, ${pass:N} that user's course password, and
// ${token:N} the token last issued to that user.
type Step struct {
	Conn int    `json:"conn"`
	Act  string `json:"act,omitempty"`
	JSON string `json:"json,omitempty"`
	Bin  []byte `json:"bin,omitempty"`
	// JSONLie and BinLie are added to the parts' real lengths in the
	// header: a length that lies (a huge one, a few bytes off).
	JSONLie int64 `json:"json_len_lie,omitempty"`
	BinLie  int64 `json:"bin_len_lie,omitempty"`
	// Split writes the frame in pieces, cut at these offsets, with a
	// pause between them, so that they arrive in separate segments.
	Split []int `json:"split,omitempty"`
	// Cut sends only the frame's first Cut bytes and then closes the
	// connection: a peer that vanishes mid-frame.
	Cut int `json:"cut,omitempty"`
	// Pipe sends the next step before this one's answer is read; with the
	// next step on the same connection, the two frames go out in one
	// write.
	Pipe bool `json:"pipe,omitempty"`
}

// Input is a session over one or more connections, its steps in the order
// they are sent.
type Input struct {
	Steps []Step `json:"steps"`
}

// Clone returns a deep copy.
func (in *Input) Clone() *Input {
	out := &Input{Steps: make([]Step, len(in.Steps))}
	for i, s := range in.Steps {
		s.Bin = append([]byte(nil), s.Bin...)
		s.Split = append([]int(nil), s.Split...)
		out.Steps[i] = s
	}
	return out
}

// Requests counts the steps that send a frame.
func (in *Input) Requests() int {
	n := 0
	for _, s := range in.Steps {
		if s.Act == ActSend {
			n++
		}
	}
	return n
}

// Conns counts the connections the input uses.
func (in *Input) Conns() int {
	seen := map[int]bool{}
	for _, s := range in.Steps {
		seen[s.Conn] = true
	}
	return len(seen)
}

// lies reports whether the step's frame is not what its header says.
func (s *Step) lies() bool {
	return s.JSONLie != 0 || s.BinLie != 0 || s.Cut > 0
}

// describe names a step in one line for reports.
func (s *Step) describe() string {
	switch s.Act {
	case ActShut:
		return fmt.Sprintf("conn %d: shut the write side", s.Conn)
	case ActDrop:
		return fmt.Sprintf("conn %d: close", s.Conn)
	case ActWait:
		return fmt.Sprintf("conn %d: pause", s.Conn)
	}
	var extra []string
	if s.JSONLie != 0 {
		extra = append(extra, fmt.Sprintf("header's JSON length off by %+d", s.JSONLie))
	}
	if s.BinLie != 0 {
		extra = append(extra, fmt.Sprintf("header's binary length off by %+d", s.BinLie))
	}
	if len(s.Bin) > 0 {
		extra = append(extra, fmt.Sprintf("%d bytes of binary", len(s.Bin)))
	}
	if len(s.Split) > 0 {
		extra = append(extra, fmt.Sprintf("written in %d pieces", len(s.Split)+1))
	}
	if s.Cut > 0 {
		extra = append(extra, fmt.Sprintf("only the first %d bytes, then close", s.Cut))
	}
	if s.Pipe {
		extra = append(extra, "next request sent before the answer")
	}
	line := fmt.Sprintf("conn %d: %s", s.Conn, s.JSON)
	if len(extra) > 0 {
		line += " [" + strings.Join(extra, "; ") + "]"
	}
	return line
}

// names resolves the placeholders of one run.
type names struct {
	prefix string
	tokens map[int]string
}

func newNames(prefix string) *names { return &names{prefix: prefix, tokens: map[int]string{}} }

func (n *names) user(i int) string { return fmt.Sprintf("%su%d", n.prefix, i) }

func coursePassword(user string) string {
	sum := md5.Sum([]byte(user))
	return hex.EncodeToString(sum[:])
}

// resolve replaces the placeholders of a step's JSON text. Names and
// tokens are plain ASCII, so they need no JSON escaping.
func (n *names) resolve(text string) string {
	if !strings.Contains(text, "${") {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "${")
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		j := strings.IndexByte(text[i:], '}')
		if j < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		b.WriteString(n.value(text[i+2 : i+j]))
		text = text[i+j+1:]
	}
}

func (n *names) value(ph string) string {
	kind, num, ok := strings.Cut(ph, ":")
	var i int
	if _, err := fmt.Sscanf(num, "%d", &i); !ok || err != nil {
		return "${" + ph + "}"
	}
	switch kind {
	case "user":
		return n.user(i)
	case "pass":
		return coursePassword(n.user(i))
	case "token":
		return n.tokens[i]
	}
	return "${" + ph + "}"
}

// placeholderUser returns N when text is exactly the JSON string "${kind:N}".
func placeholderUser(raw json.RawMessage, kind string) (int, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return 0, false
	}
	var i int
	if _, err := fmt.Sscanf(s, "${"+kind+":%d}", &i); err != nil || s != fmt.Sprintf("${%s:%d}", kind, i) {
		return 0, false
	}
	return i, true
}

// frame builds the bytes a send step writes, its placeholders resolved.
func (s *Step) frame(n *names) []byte {
	text := n.resolve(s.JSON)
	b := append(spec.Header(lie(len(text), s.JSONLie), lie(len(s.Bin), s.BinLie)), text...)
	b = append(b, s.Bin...)
	if s.Cut > 0 && s.Cut < len(b) {
		b = b[:s.Cut]
	}
	return b
}

// lie is a part's length as a lying header announces it, kept in 32 bits.
func lie(n int, by int64) uint32 {
	v := int64(n) + by
	return uint32(min(max(v, 0), math.MaxUint32))
}

// Key is the input as one string, to compare inputs.
func (in *Input) Key() string {
	b, _ := json.Marshal(in)
	return string(b)
}
