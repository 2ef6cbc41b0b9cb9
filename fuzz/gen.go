package fuzz

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

// gen builds and mutates inputs. Every choice comes from its rng, so a
// seed gives the same inputs against the same server.
type gen struct {
	rng   *rand.Rand
	bs    int64 // the block size the server plans with
	conns int   // the most connections an input opens
}

func newGen(seed uint64, blockSize int64) *gen {
	if blockSize <= 0 {
		blockSize = spec.DefaultBlockSize
	}
	return &gen{rng: rand.New(rand.NewPCG(seed, seed^0x5354455046555a5a)), bs: blockSize}
}

func (g *gen) pick(n int) int {
	if n <= 0 {
		return 0
	}
	return g.rng.IntN(n)
}
func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

// req builds a request's JSON text from name/value pairs; values are Go
// values encoded as JSON, or json.RawMessage.
func req(op spec.Operation, t spec.Type, kv ...any) string {
	m := spec.NewRequest(op, t)
	for i := 0; i+1 < len(kv); i += 2 {
		m.Set(kv[i].(string), kv[i+1])
	}
	return m.JSONString()
}

func tok(u int) string  { return fmt.Sprintf("${token:%d}", u) }
func user(u int) string { return fmt.Sprintf("${user:%d}", u) }
func pass(u int) string { return fmt.Sprintf("${pass:%d}", u) }

// builder keeps what a flow needs to stay valid: which connections have
// logged in, and the plans it made.
type builder struct {
	g      *gen
	steps  []Step
	conns  int
	userOf map[int]int // connection -> user
	logged map[int]bool
	plans  map[string]int64 // user/key -> size
	keys   []string
}

func (g *gen) builder() *builder {
	b := &builder{g: g, userOf: map[int]int{}, logged: map[int]bool{}, plans: map[string]int64{}}
	switch r := g.rng.Float64(); {
	case r < 0.5:
		b.conns = 1
	case r < 0.85:
		b.conns = 2
	default:
		b.conns = 3
	}
	b.conns = max(1, min(b.conns, g.conns))
	b.userOf[0] = 1
	for c := 1; c < b.conns; c++ {
		b.userOf[c] = 1
		if g.chance(0.3) {
			b.userOf[c] = 2
		}
	}
	b.keys = []string{"k1", "k2"}
	return b
}

func (b *builder) conn() int { return b.g.pick(b.conns) }

func (b *builder) send(c int, text string, bin []byte) {
	if !b.logged[c] && b.g.chance(0.9) {
		u := b.userOf[c]
		b.steps = append(b.steps, Step{Conn: c, JSON: req(spec.OpLogin, spec.TypeAuth, spec.FieldUsername, user(u), spec.FieldPassword, pass(u))})
	}
	b.logged[c] = true
	b.steps = append(b.steps, Step{Conn: c, JSON: text, Bin: bin})
}

func (b *builder) key() string { return b.keys[b.g.pick(len(b.keys))] }

func (b *builder) sizes() int64 {
	bs := b.g.bs
	c := []int64{1, 2, 100, bs - 1, bs, bs + 1, 2 * bs, 2*bs + 7, 3 * bs, 3*bs - 1, 3*bs + 5, 4*bs + 1}
	return c[b.g.pick(len(c))]
}

func (b *builder) block(size, idx int64) []byte {
	n := spec.BlockLen(size, b.g.bs, idx)
	out := make([]byte, n)
	x := b.g.rng.Uint64()
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = byte(x)
	}
	return out
}

// fileFlow plans a file and uploads it in some order, over one or more
// of the user's connections, then reads it back.
func (b *builder) fileFlow(c int, key string) {
	u := b.userOf[c]
	size := b.sizes()
	b.send(c, req(spec.OpSave, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, key, spec.FieldSize, size), nil)
	total := spec.TotalBlocks(size, b.g.bs)
	// The orders clients use (in order; the short last block first) and
	// those a server may not expect (in reverse, any).
	order := b.g.rng.Perm(int(total))
	switch r := b.g.rng.Float64(); {
	case r < 0.25:
		for i := range order {
			order[i] = i
		}
	case r < 0.4:
		for i := range order {
			order[i] = int(total) - 1 - i
		}
	case r < 0.55 && total > 1:
		order[0] = int(total) - 1
		for i := 1; i < len(order); i++ {
			order[i] = i - 1
		}
	}
	same := []int{}
	for cc := 0; cc < b.conns; cc++ {
		if b.userOf[cc] == u {
			same = append(same, cc)
		}
	}
	for _, i := range order {
		cc := c
		if len(same) > 1 && b.g.chance(0.3) {
			cc = same[b.g.pick(len(same))]
		}
		b.send(cc, req(spec.OpUpload, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, key, spec.FieldBlockIndex, i), b.block(size, int64(i)))
	}
	if b.g.chance(0.7) {
		b.send(c, req(spec.OpGet, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, key), nil)
	}
	if b.g.chance(0.5) && total > 0 {
		b.send(c, req(spec.OpDownload, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, key, spec.FieldBlockIndex, b.g.pick(int(total))), nil)
	}
}

var dataValues = []any{"v", 1, 2.5, true, nil, []int{1, 2}, map[string]int{"a": 1}, "é中文", "", strings.Repeat("x", 300)}

func (b *builder) dataFlow(c int, key string) {
	u := b.userOf[c]
	kv := []any{spec.FieldToken, tok(u), spec.FieldKey, key}
	for i := 0; i < 1+b.g.pick(3); i++ {
		kv = append(kv, fmt.Sprintf("f%d", i), dataValues[b.g.pick(len(dataValues))])
	}
	b.send(c, req(spec.OpSave, spec.TypeData, kv...), nil)
	b.send(c, req(spec.OpGet, spec.TypeData, spec.FieldToken, tok(u), spec.FieldKey, key), nil)
	if b.g.chance(0.6) {
		b.send(c, req(spec.OpDelete, spec.TypeData, spec.FieldToken, tok(u), spec.FieldKey, key), nil)
		if b.g.chance(0.5) {
			b.send(c, req(spec.OpGet, spec.TypeData, spec.FieldToken, tok(u), spec.FieldKey, key), nil)
		}
	}
}

// walk sends random operations on a few keys.
func (b *builder) walk(n int) {
	for i := 0; i < n; i++ {
		c := b.conn()
		u := b.userOf[c]
		k := b.key()
		switch b.g.pick(9) {
		case 0:
			b.fileFlow(c, k)
		case 1:
			b.dataFlow(c, k)
		case 2:
			b.send(c, req(spec.OpSave, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, k, spec.FieldSize, b.sizes()), nil)
		case 3:
			size := b.sizes()
			idx := int64(b.g.pick(int(spec.TotalBlocks(size, b.g.bs))))
			b.send(c, req(spec.OpUpload, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, k, spec.FieldBlockIndex, idx), b.block(size, idx))
		case 4:
			b.send(c, req(spec.OpGet, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, k), nil)
		case 5:
			b.send(c, req(spec.OpDownload, spec.TypeFile, spec.FieldToken, tok(u), spec.FieldKey, k, spec.FieldBlockIndex, b.g.pick(3)), nil)
		case 6, 7:
			t := spec.TypeFile
			if b.g.chance(0.3) {
				t = spec.TypeData
			}
			b.send(c, req(spec.OpDelete, t, spec.FieldToken, tok(u), spec.FieldKey, k), nil)
		case 8:
			b.send(c, req(spec.OpLogin, spec.TypeAuth, spec.FieldUsername, user(u), spec.FieldPassword, pass(u)), nil)
		}
	}
}

// fresh builds a new input from valid flows.
func (g *gen) fresh() *Input {
	b := g.builder()
	switch g.pick(4) {
	case 0:
		b.fileFlow(0, b.key())
	case 1:
		b.dataFlow(0, b.key())
	default:
		b.walk(2 + g.pick(6))
	}
	if g.chance(0.3) {
		c := b.conn()
		b.steps = append(b.steps, Step{Conn: c, JSON: req(spec.OpBye, spec.TypeAuth)})
	}
	return &Input{Steps: b.steps}
}

// Interesting values for fields, by what they test.
var (
	numberValues = []string{"0", "-1", "1.5", "-0.5", "1e3", "2147483648", "4294967296", "4294967297", "9007199254740993", "18446744073709551616", `"1"`, `""`, "null", "true", "[]", "{}"}
	stringValues = []string{`""`, `" "`, `"é中文"`, `"` + strings.Repeat("k", 300) + `"`, `"../${user:2}/k1"`, `"a/b"`, `".."`, `"."`, `"k\u0000"`, `"k\n"`, `"a\\b"`, `"k1"`, `"k2"`, `"${token:2}"`, `"${token:1}x"`, `"x"`, "0", "5", "null", "[]", "{}", "true"}
	opValues     = []string{`"SAVE"`, `"GET"`, `"DELETE"`, `"UPLOAD"`, `"DOWNLOAD"`, `"LOGIN"`, `"BYE"`, `"save"`, `"ERROR"`, "5", `""`}
	typeValues   = []string{`"FILE"`, `"DATA"`, `"AUTH"`, `"file"`, `"ERROR"`, "1", `""`}
	dirValues    = []string{`"REQUEST"`, `"RESPONSE"`, `"EARTH"`, `"request"`, "0", `""`}
	extraNames   = []string{"extra", "md5", "note", "é", "", strings.Repeat("n", 100)}
)

// mutate changes in a few times, at the levels of fields, frames and
// sessions.
func (g *gen) mutate(in *Input, corpus []*Input) *Input {
	out := in.Clone()
	for n := 1 + g.pick(3); n > 0; n-- {
		switch r := g.pick(100); {
		case r < 45:
			g.mutateField(out)
		case r < 65:
			g.mutateFrame(out)
		default:
			g.mutateSession(out, corpus)
		}
	}
	if len(out.Steps) > maxSteps {
		out.Steps = out.Steps[:maxSteps]
	}
	return out
}

// maxSteps bounds an input's length.
const maxSteps = 40

func (g *gen) sendSteps(in *Input) []int {
	var idx []int
	for i, s := range in.Steps {
		if s.Act == ActSend {
			idx = append(idx, i)
		}
	}
	return idx
}

func (g *gen) mutateField(in *Input) {
	idx := g.sendSteps(in)
	if len(idx) == 0 {
		return
	}
	st := &in.Steps[idx[g.pick(len(idx))]]
	m, err := spec.ParseMessage([]byte(st.JSON))
	if err != nil {
		return
	}
	fields := append(m.Fields(), spec.FieldOperation)
	name := fields[g.pick(len(fields))]
	switch g.pick(10) {
	case 0:
		m.Delete(name)
	case 1:
		extra := extraNames[g.pick(len(extraNames))]
		m.SetRaw(extra, json.RawMessage(stringValues[g.pick(len(stringValues))]))
	default:
		var vals []string
		switch name {
		case spec.FieldOperation:
			vals = opValues
		case spec.FieldType:
			vals = typeValues
		case spec.FieldDirection:
			vals = dirValues
		case spec.FieldSize, spec.FieldBlockIndex:
			vals = append(numberValues, strconv.FormatInt(g.bs, 10), strconv.FormatInt(g.bs+1, 10), "2", "3")
		default:
			vals = stringValues
		}
		m.SetRaw(name, json.RawMessage(vals[g.pick(len(vals))]))
	}
	st.JSON = m.JSONString()
}

func (g *gen) mutateFrame(in *Input) {
	idx := g.sendSteps(in)
	if len(idx) == 0 {
		return
	}
	i := idx[g.pick(len(idx))]
	st := &in.Steps[i]
	switch g.pick(9) {
	case 0:
		st.JSONLie = []int64{-1, 1, 3, -3, 1 << 31}[g.pick(5)]
	case 1:
		st.BinLie = []int64{-1, 1, 100, 1 << 31}[g.pick(4)]
	case 2:
		st.Bin = append(st.Bin, make([]byte, 1+g.pick(64))...)
	case 3:
		if len(st.Bin) > 0 {
			st.Bin = st.Bin[:g.pick(len(st.Bin))]
		}
	case 4:
		st.Split = []int{[]int{1, 3, 4, 6, 8, 9}[g.pick(6)], 8 + g.pick(max(len(st.JSON), 1))}
	case 5:
		st.Pipe = true
		if i+1 < len(in.Steps) {
			in.Steps[i+1].Conn = st.Conn
		}
	case 6:
		st.Cut = 1 + g.pick(spec.HeaderLen+len(st.JSON))
	case 7:
		st.JSON = []string{`{"operation":"GET"`, `[]`, `"x"`, `{}`, "\xff\xfe", `{"operation":"LOGIN","direction":"REQUEST","type":"AUTH","username":1}`, ""}[g.pick(7)]
	case 8:
		// A request whose header counts the JSON's characters, as the
		// course's server writes its frames.
		if r := []rune(st.JSON); len(r) != len(st.JSON) {
			st.JSONLie = int64(len(r) - len(st.JSON))
		} else {
			m, err := spec.ParseMessage([]byte(st.JSON))
			if err == nil {
				m.SetString("note", "é中")
				st.JSON = m.JSONString()
				st.JSONLie = -5
			}
		}
	}
}

func (g *gen) mutateSession(in *Input, corpus []*Input) {
	n := len(in.Steps)
	if n == 0 {
		return
	}
	i := g.pick(n)
	switch g.pick(9) {
	case 0: // swap with the next
		if i+1 < n {
			in.Steps[i], in.Steps[i+1] = in.Steps[i+1], in.Steps[i]
		}
	case 1: // repeat
		s := in.Clone().Steps[i]
		in.Steps = append(in.Steps[:i+1], append([]Step{s}, in.Steps[i+1:]...)...)
	case 2: // skip
		in.Steps = append(in.Steps[:i], in.Steps[i+1:]...)
	case 3: // move to another connection (a token is good on all of them)
		in.Steps[i].Conn = g.pick(max(g.conns, 1))
	case 4: // repeat on another connection
		s := in.Clone().Steps[i]
		s.Conn = (s.Conn + 1 + g.pick(2)) % max(g.conns, 1)
		in.Steps = append(in.Steps[:i+1], append([]Step{s}, in.Steps[i+1:]...)...)
	case 5: // half-close
		in.Steps = append(in.Steps[:i+1], append([]Step{{Conn: in.Steps[i].Conn, Act: ActShut}}, in.Steps[i+1:]...)...)
	case 6: // drop the connection
		in.Steps = append(in.Steps[:i+1], append([]Step{{Conn: in.Steps[i].Conn, Act: ActDrop}, {Conn: in.Steps[i].Conn, Act: ActWait}}, in.Steps[i+1:]...)...)
	case 7: // splice another input's steps in
		if len(corpus) > 0 {
			o := corpus[g.pick(len(corpus))].Clone()
			if len(o.Steps) > 0 {
				j := g.pick(len(o.Steps))
				k := j + 1 + g.pick(min(6, len(o.Steps)-j))
				in.Steps = append(in.Steps[:i], append(o.Steps[j:k], in.Steps[i:]...)...)
			}
		}
	case 8: // pipeline the rest of a connection's steps
		for k := i; k < n && k < i+4; k++ {
			if in.Steps[k].Conn == in.Steps[i].Conn {
				in.Steps[k].Pipe = true
			}
		}
	}
}
