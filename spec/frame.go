package spec

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"unicode/utf8"
)

// Default read limits. A header announcing more is refused before anything
// is allocated for it.
const (
	DefaultMaxJSON   = 1 << 20 // 1 MiB of JSON text
	DefaultMaxBinary = 1 << 20 // 1 MiB of binary: 16 times the largest block
)

// Limits bounds what a Reader accepts. Zero fields take the defaults.
type Limits struct {
	MaxJSON   uint32
	MaxBinary uint32
}

func (l Limits) withDefaults() Limits {
	if l.MaxJSON == 0 {
		l.MaxJSON = DefaultMaxJSON
	}
	if l.MaxBinary == 0 {
		l.MaxBinary = DefaultMaxBinary
	}
	return l
}

// Errors a Reader returns, wrapped in a *FrameError; test with errors.Is.
var (
	ErrTruncatedHeader = errors.New("stream ended inside a frame header")
	ErrTruncatedBody   = errors.New("stream ended inside a frame body")
	ErrJSONTooLarge    = errors.New("JSON length exceeds the limit")
	ErrBinaryTooLarge  = errors.New("binary length exceeds the limit")
	ErrNotJSON         = errors.New("JSON part does not parse")
	ErrNotObject       = errors.New("JSON part is not an object")
	ErrInvalidUTF8     = errors.New("JSON part is not valid UTF-8")
	// ErrCharCountLength is the course reference server's framing bug: the
	// JSON length counts characters, not bytes, so non-ASCII text makes it
	// too small and the JSON part ends early.
	ErrCharCountLength = errors.New("JSON length counts characters, not bytes")
)

// FrameError describes a frame the Reader could not accept.
type FrameError struct {
	Err       error  // one of the Err* values above
	Offset    int64  // stream offset of the frame's first header byte
	JSONLen   uint32 // as announced by the header
	BinaryLen uint32 // as announced by the header
	Limit     uint32 // for the *TooLarge errors
	Detail    string // the underlying parser's message, or what was seen
	// Recovered is set for ErrCharCountLength: the message as the sender
	// meant it. The Reader has consumed the whole frame, so the stream is
	// still in step.
	Recovered *Message
	// ActualJSONLen is, for ErrCharCountLength, the JSON's length in bytes.
	ActualJSONLen int
}

func (e *FrameError) Error() string {
	s := fmt.Sprintf("step frame at offset %d: %v", e.Offset, e.Err)
	switch {
	case errors.Is(e.Err, ErrJSONTooLarge):
		s += fmt.Sprintf(" (%d > %d bytes)", e.JSONLen, e.Limit)
	case errors.Is(e.Err, ErrBinaryTooLarge):
		s += fmt.Sprintf(" (%d > %d bytes)", e.BinaryLen, e.Limit)
	case errors.Is(e.Err, ErrCharCountLength):
		s += fmt.Sprintf(" (header says %d, the JSON text is %d bytes)", e.JSONLen, e.ActualJSONLen)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *FrameError) Unwrap() error { return e.Err }

// Resumable reports whether the whole frame was consumed, so that the next
// frame can still be read from the same stream. Truncated and oversized
// frames leave the stream out of step.
func (e *FrameError) Resumable() bool {
	switch e.Err {
	case ErrNotJSON, ErrNotObject, ErrInvalidUTF8, ErrCharCountLength:
		return true
	}
	return false
}

// Frame is one frame's raw parts. Its slices are owned by the Reader and
// valid only until the next read.
type Frame struct {
	Offset int64
	JSON   []byte
	Binary []byte
}

// Reader reads STEP frames from a stream. It reuses one buffer for every
// frame, checks the announced lengths against its Limits before growing it,
// and is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	off int64
	hdr [HeaderLen]byte // the header of the frame last read
	buf []byte
}

// NewReader returns a Reader on r with the given limits.
func NewReader(r io.Reader, lim Limits) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 64<<10 {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Reader{br: br, lim: lim.withDefaults()}
}

// Offset is the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// Buffered is the number of bytes read from the stream but not yet consumed,
// which tells whether a client has already sent its next request.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// FrameBuffered reports whether the next frame is entirely in the Reader's
// buffer, so that reading it will not wait for the peer. A server that
// answers pipelined requests may hold its responses back while this is
// true and write them together once it is not.
func (r *Reader) FrameBuffered() bool {
	n := r.br.Buffered()
	if n < HeaderLen {
		return false
	}
	hdr, _ := r.br.Peek(HeaderLen)
	need := HeaderLen + int64(binary.BigEndian.Uint32(hdr[0:4])) + int64(binary.BigEndian.Uint32(hdr[4:8]))
	return int64(n) >= need
}

// Missing is how many bytes of the next frame are not in the Reader's
// buffer yet: 0 when it is whole there, and -1 when its header is not
// (its length is then unknown).
func (r *Reader) Missing() int64 {
	n := r.br.Buffered()
	if n < HeaderLen {
		return -1
	}
	hdr, _ := r.br.Peek(HeaderLen)
	need := HeaderLen + int64(binary.BigEndian.Uint32(hdr[0:4])) + int64(binary.BigEndian.Uint32(hdr[4:8]))
	return max(0, need-int64(n))
}

// ReadFrame reads one frame without parsing its JSON. It returns io.EOF
// when the stream ends cleanly between frames.
func (r *Reader) ReadFrame() (Frame, error) { return r.readFrame(false) }

// readFrame is ReadFrame. With inPlace set, a frame already whole in the
// read buffer is returned where it lies, without being copied: its slices
// are then valid only until the Reader is next used, even to peek.
func (r *Reader) readFrame(inPlace bool) (Frame, error) {
	start := r.off
	n, err := io.ReadFull(r.br, r.hdr[:])
	r.off += int64(n)
	if err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return Frame{}, &FrameError{Err: ErrTruncatedHeader, Offset: start, Detail: fmt.Sprintf("%d of %d header bytes", n, HeaderLen)}
		}
		return Frame{}, fmt.Errorf("read step frame header: %w", err)
	}
	jlen := binary.BigEndian.Uint32(r.hdr[0:4])
	blen := binary.BigEndian.Uint32(r.hdr[4:8])
	if jlen > r.lim.MaxJSON {
		return Frame{}, &FrameError{Err: ErrJSONTooLarge, Offset: start, JSONLen: jlen, BinaryLen: blen, Limit: r.lim.MaxJSON}
	}
	if blen > r.lim.MaxBinary {
		return Frame{}, &FrameError{Err: ErrBinaryTooLarge, Offset: start, JSONLen: jlen, BinaryLen: blen, Limit: r.lim.MaxBinary}
	}
	total := int(jlen) + int(blen)
	if inPlace && total <= r.br.Buffered() {
		body, _ := r.br.Peek(total)
		r.br.Discard(total)
		r.off += int64(total)
		return Frame{Offset: start, JSON: body[:jlen], Binary: body[jlen:]}, nil
	}
	body, n, err := r.readBody(total)
	r.off += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Frame{}, &FrameError{Err: ErrTruncatedBody, Offset: start, JSONLen: jlen, BinaryLen: blen,
				Detail: fmt.Sprintf("%d of %d body bytes", n, total)}
		}
		return Frame{}, fmt.Errorf("read step frame body: %w", err)
	}
	return Frame{Offset: start, JSON: body[:jlen], Binary: body[jlen:]}, nil
}

// growStep is how much of a frame body the Reader allocates before the
// peer has sent it: a header is a claim, and a peer that announces a large
// frame and sends nothing must not cost its full length in memory.
const growStep = 64 << 10

// readBody reads a body of total bytes into the Reader's buffer, growing
// the buffer only as the bytes arrive.
func (r *Reader) readBody(total int) ([]byte, int, error) {
	if cap(r.buf) >= total {
		n, err := io.ReadFull(r.br, r.buf[:total])
		return r.buf[:total], n, err
	}
	buf := r.buf[:0]
	for len(buf) < total {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(total, max(2*cap(buf), growStep)))
			copy(grown, buf)
			buf = grown
		}
		n, err := io.ReadFull(r.br, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			r.buf = buf
			return buf, len(buf), err
		}
	}
	r.buf = buf
	return buf, total, nil
}

// ReadMessage reads one frame and parses its JSON part. The message's Binary
// aliases the Reader's buffer and is valid only until the next read; Clone
// the message to keep it. JSON that is not a UTF-8 object is reported as a
// resumable *FrameError.
func (r *Reader) ReadMessage() (*Message, error) { return r.ReadMessageInto(NewMessage()) }

// ReadMessageInto is ReadMessage parsing into m, whose memory it reuses: a
// server that handles each request before it reads the next parses a
// stream of requests without allocating. On success it returns m, whose
// values, like its Binary, are valid until the next read into m; a frame
// recovered from a character-count length comes in a new message, as
// with ReadMessage. A frame already whole in the read buffer is parsed
// where it lies, without being copied.
func (r *Reader) ReadMessageInto(m *Message) (*Message, error) {
	f, err := r.readFrame(true)
	if err != nil {
		return nil, err
	}
	m, perr := parseFrameJSONInto(f, m)
	if perr == nil {
		m.Binary = f.Binary
		return m, nil
	}
	if fe := r.detectCharCount(f, perr); fe != nil {
		return nil, fe
	}
	return nil, perr
}

func parseFrameJSON(f Frame) (*Message, *FrameError) { return parseFrameJSONInto(f, NewMessage()) }

func parseFrameJSONInto(f Frame, m *Message) (*Message, *FrameError) {
	jlen := uint32(len(f.JSON))
	blen := uint32(len(f.Binary))
	if !utf8.Valid(f.JSON) {
		return nil, &FrameError{Err: ErrInvalidUTF8, Offset: f.Offset, JSONLen: jlen, BinaryLen: blen}
	}
	m.Binary = nil
	if err := m.parseObject(f.JSON); err != nil {
		if errors.Is(err, errNotObject) {
			return nil, &FrameError{Err: ErrNotObject, Offset: f.Offset, JSONLen: jlen, BinaryLen: blen, Detail: snippet(f.JSON)}
		}
		return nil, &FrameError{Err: ErrNotJSON, Offset: f.Offset, JSONLen: jlen, BinaryLen: blen, Detail: err.Error()}
	}
	return m, nil
}

// detectCharCount checks whether a frame that failed to parse is a frame
// whose JSON length counted characters: reading on until the JSON text has
// as many characters as the header announced must then give a JSON object.
// If so, it consumes the rest of the frame (text and binary) and returns the
// recovered message inside an ErrCharCountLength error.
func (r *Reader) detectCharCount(f Frame, perr *FrameError) *FrameError {
	jlen := int(binary.BigEndian.Uint32(r.hdr[0:4]))
	blen := int(binary.BigEndian.Uint32(r.hdr[4:8]))
	if !hasNonASCII(f.JSON) {
		return nil
	}
	// The frame's binary part as read holds the JSON's tail followed by
	// the start of the real binary; the stream holds the rest.
	got := append([]byte(nil), f.JSON...)
	got = append(got, f.Binary...)
	need := jlen // characters
	// Only bytes already received are looked at: a malformed request from
	// a correct peer must be answered, not waited on.
	text, ok := completeChars(got, need, func(n int) []byte {
		if n > r.br.Buffered() {
			return nil
		}
		p, _ := r.br.Peek(n)
		return p
	})
	if !ok || len(text) > int(r.lim.MaxJSON) {
		return nil
	}
	m := NewMessage()
	if m.parseObject(text) != nil {
		return nil
	}
	extra := len(text) - jlen
	// Bytes still in the stream: the text's tail and the binary not yet read.
	inStream := extra + blen - len(f.Binary)
	if inStream < 0 {
		inStream = 0
	}
	if inStream > 0 {
		if int64(inStream) > int64(r.lim.MaxBinary)+int64(r.lim.MaxJSON) {
			return nil
		}
		tail := make([]byte, inStream)
		n, err := io.ReadFull(r.br, tail)
		r.off += int64(n)
		if err != nil {
			// Bytes are consumed now: the stream is no longer in step.
			return &FrameError{Err: ErrTruncatedBody, Offset: f.Offset, JSONLen: uint32(jlen), BinaryLen: uint32(blen),
				Detail: "the stream ended inside a frame whose JSON length counts characters"}
		}
		got = append(got, tail...)
	}
	m.Binary = append([]byte(nil), got[len(text):len(text)+blen]...)
	return &FrameError{Err: ErrCharCountLength, Offset: f.Offset, JSONLen: uint32(jlen), BinaryLen: uint32(blen),
		Recovered: m, ActualJSONLen: len(text), Detail: "the JSON holds non-ASCII text; its length must count bytes"}
}

// completeChars returns the prefix of a byte stream that holds exactly chars
// UTF-8 characters. The stream is have followed by what peek(n) returns: the
// n bytes after have, or fewer when they are not at hand (peek must not block).
func completeChars(have []byte, chars int, peek func(n int) []byte) ([]byte, bool) {
	buf := have
	ensure := func(n int) bool {
		if len(buf) >= n {
			return true
		}
		more := peek(n - len(have))
		if len(have)+len(more) < n {
			return false
		}
		buf = append(have[:len(have):len(have)], more...)
		return true
	}
	i := 0
	for n := 0; n < chars; n++ {
		if !ensure(i + 1) {
			return nil, false
		}
		size := seqLen(buf[i])
		if size == 0 || !ensure(i+size) {
			return nil, false
		}
		c, sz := utf8.DecodeRune(buf[i : i+size])
		if c == utf8.RuneError && sz <= 1 {
			return nil, false
		}
		i += sz
	}
	return buf[:i], true
}

// seqLen is the length of the UTF-8 sequence that starts with b, 0 if b
// cannot start one.
func seqLen(b byte) int {
	switch {
	case b < 0x80:
		return 1
	case b>>5 == 0x6:
		return 2
	case b>>4 == 0xe:
		return 3
	case b>>3 == 0x1e:
		return 4
	}
	return 0
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

func snippet(b []byte) string {
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

// DecodeFrame parses one frame at the start of b, for decoders that hold a
// byte stream in memory. It returns the message and the number of bytes the
// frame took. When b holds only part of a frame it returns ErrTruncatedHeader
// or ErrTruncatedBody (need more data). The character-count bug is detected
// as by Reader.ReadMessage. The message's Binary aliases b.
func DecodeFrame(b []byte, lim Limits) (*Message, int, error) {
	return DecodeFrameInto(b, lim, nil)
}

// DecodeFrameInto is DecodeFrame decoding into m, whose memory it reuses
// (a new message when m is nil). The message returned is m when the frame
// decodes; otherwise m holds nothing of use.
func DecodeFrameInto(b []byte, lim Limits, m *Message) (*Message, int, error) {
	lim = lim.withDefaults()
	if len(b) < HeaderLen {
		return nil, 0, &FrameError{Err: ErrTruncatedHeader, Detail: fmt.Sprintf("%d of %d header bytes", len(b), HeaderLen)}
	}
	jlen := binary.BigEndian.Uint32(b[0:4])
	blen := binary.BigEndian.Uint32(b[4:8])
	if jlen > lim.MaxJSON {
		return nil, 0, &FrameError{Err: ErrJSONTooLarge, JSONLen: jlen, BinaryLen: blen, Limit: lim.MaxJSON}
	}
	if blen > lim.MaxBinary {
		return nil, 0, &FrameError{Err: ErrBinaryTooLarge, JSONLen: jlen, BinaryLen: blen, Limit: lim.MaxBinary}
	}
	end := HeaderLen + int(jlen) + int(blen)
	if len(b) < end {
		return nil, 0, &FrameError{Err: ErrTruncatedBody, JSONLen: jlen, BinaryLen: blen,
			Detail: fmt.Sprintf("%d of %d body bytes", len(b)-HeaderLen, end-HeaderLen)}
	}
	f := Frame{JSON: b[HeaderLen : HeaderLen+int(jlen)], Binary: b[HeaderLen+int(jlen) : end]}
	if m == nil {
		m = NewMessage()
	}
	m, perr := parseFrameJSONInto(f, m)
	if perr == nil {
		m.Binary = f.Binary
		return m, end, nil
	}
	if hasNonASCII(f.JSON) {
		rest := b[HeaderLen:]
		text, ok := completeChars(rest, int(jlen), func(int) []byte { return nil })
		if ok && len(text) <= int(lim.MaxJSON) {
			rm := NewMessage()
			if rm.parseObject(text) == nil {
				n := HeaderLen + len(text) + int(blen)
				if n > len(b) {
					// The text is whole but the binary part has not all
					// arrived: as for any frame, more data is needed.
					return nil, 0, &FrameError{Err: ErrTruncatedBody, JSONLen: jlen, BinaryLen: blen,
						Detail: fmt.Sprintf("%d of %d body bytes of a frame whose JSON length counts characters", len(b)-HeaderLen, n-HeaderLen)}
				}
				rm.Binary = b[HeaderLen+len(text) : n]
				return nil, n, &FrameError{Err: ErrCharCountLength, JSONLen: jlen, BinaryLen: blen, Recovered: rm,
					ActualJSONLen: len(text), Detail: "the JSON holds non-ASCII text; its length must count bytes"}
			}
		}
	}
	return nil, end, perr
}

// Writer writes STEP frames. Each frame goes out in a single Write call,
// because some course clients read a whole reply with one recv. Its buffer
// is reused; a Writer is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
	// Reused by WriteMessagesBuffers: where each frame's head ends in buf,
	// the buffers of a vectored write, and the header writev consumes.
	ends []int
	vecs [][]byte
	vec  net.Buffers
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteMessage writes m as one frame, with byte lengths.
func (w *Writer) WriteMessage(m *Message) error {
	var err error
	w.buf, err = AppendFrame(w.buf[:0], m)
	if err != nil {
		return err
	}
	_, err = w.w.Write(w.buf)
	if err != nil {
		return fmt.Errorf("write step frame: %w", err)
	}
	return nil
}

// WriteMessageBuffers writes m as one frame with a single vectored write
// (writev) on a TCP or Unix connection: the header and JSON from the
// Writer's buffer, the binary part from m.Binary itself, so that a block
// is not copied. It is the same single write FRAME-6 asks for; on other
// writers the frame is copied and written with one Write, as by
// WriteMessage.
func (w *Writer) WriteMessageBuffers(m *Message) error { return w.WriteMessagesBuffers(m) }

// WriteMessagesBuffers writes several frames, in order, as
// WriteMessageBuffers writes one: with a single vectored write, their
// binary parts not copied.
func (w *Writer) WriteMessagesBuffers(ms ...*Message) error {
	ends := w.ends[:0]
	w.buf = w.buf[:0]
	var err error
	for _, m := range ms {
		if w.buf, err = AppendFrameHead(w.buf, m); err != nil {
			return err
		}
		ends = append(ends, len(w.buf))
	}
	switch w.w.(type) {
	case *net.TCPConn, *net.UnixConn:
		bufs := w.vecs[:0]
		start := 0
		for i, m := range ms {
			bufs = append(bufs, w.buf[start:ends[i]])
			if len(m.Binary) > 0 {
				bufs = append(bufs, m.Binary)
			}
			start = ends[i]
		}
		w.vecs, w.ends = bufs, ends
		if len(bufs) == 1 {
			_, err = w.w.Write(bufs[0])
		} else {
			w.vec = bufs // WriteTo consumes w.vec; w.vecs keeps the array
			_, err = w.vec.WriteTo(w.w)
		}
	default:
		// Other writers would see net.Buffers one buffer at a time.
		var out []byte
		start := 0
		for i, m := range ms {
			out = append(out, w.buf[start:ends[i]]...)
			out = append(out, m.Binary...)
			start = ends[i]
		}
		_, err = w.w.Write(out)
	}
	if err != nil {
		return fmt.Errorf("write step frame: %w", err)
	}
	return nil
}

// AppendFrameHead appends the header and JSON part of m's frame to dst,
// the header announcing m.Binary, but not the binary part itself: the
// caller sends it right after, from where it is.
func AppendFrameHead(dst []byte, m *Message) ([]byte, error) {
	return AppendFrameHeadLen(dst, m, int64(len(m.Binary)))
}

// AppendFrameHeadLen is AppendFrameHead for a binary part of binLen bytes
// that is not in m.Binary (a block the caller sends from a file).
func AppendFrameHeadLen(dst []byte, m *Message, binLen int64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = m.AppendJSON(dst)
	jlen := len(dst) - start - HeaderLen
	if uint64(jlen) > math.MaxUint32 || binLen < 0 || binLen > math.MaxUint32 {
		return dst[:start], ErrFrameTooLarge
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(jlen))
	binary.BigEndian.PutUint32(dst[start+4:], uint32(binLen))
	return dst, nil
}

// ErrFrameTooLarge is returned when a part does not fit in 32 bits.
var ErrFrameTooLarge = errors.New("frame part exceeds 2^32-1 bytes")

// AppendFrame appends m's frame (header, JSON, binary) to dst.
func AppendFrame(dst []byte, m *Message) ([]byte, error) {
	dst, err := AppendFrameHead(dst, m)
	if err != nil {
		return dst, err
	}
	return append(dst, m.Binary...), nil
}

// EncodeFrame returns m's frame.
func EncodeFrame(m *Message) ([]byte, error) { return AppendFrame(nil, m) }

// RawFrame builds a frame from raw parts with the header's lengths taken
// from them; tests and conformance cases use it to send exact bytes.
func RawFrame(jsonText, bin []byte) []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(jsonText)+len(bin))
	binary.BigEndian.PutUint32(b[0:], uint32(len(jsonText)))
	binary.BigEndian.PutUint32(b[4:], uint32(len(bin)))
	b = append(b, jsonText...)
	return append(b, bin...)
}

// Header builds a frame header announcing the given lengths.
func Header(jsonLen, binLen uint32) []byte {
	b := make([]byte, HeaderLen)
	binary.BigEndian.PutUint32(b[0:], jsonLen)
	binary.BigEndian.PutUint32(b[4:], binLen)
	return b
}

// compile-time check that Message satisfies the json interfaces.
var (
	_ json.Marshaler   = (*Message)(nil)
	_ json.Unmarshaler = (*Message)(nil)
)
