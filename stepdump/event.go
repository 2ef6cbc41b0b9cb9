// Package stepdump decodes STEP conversations from pcap and pcapng captures:
// it reassembles the TCP streams, cuts them into STEP frames with the codec
// of package spec, pairs requests with responses, diagnoses the classic
// mistakes, rebuilds the files moved and draws the exchange.
package stepdump

//go:generate go run ../fixtures/gen -out ../fixtures/captures

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Conn is one TCP connection that carries STEP.
type Conn struct {
	ID     int            // 1, 2, ... in the order the capture shows them
	Client netip.AddrPort // the side that sends requests
	Server netip.AddrPort
	First  time.Time // first packet seen
	Last   time.Time // last packet seen
	// Summary is filled as the conversation goes; it is final once the
	// connection has ended (see Handler.ConnEnd).
	Summary ConnSummary
}

func (c *Conn) String() string {
	return fmt.Sprintf("c%d %s -> %s", c.ID, c.Client, c.Server)
}

// Range is a half-open byte range [Start, End) of a stream or a frame.
type Range struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End) }

// Message is one decoded STEP frame.
type Message struct {
	Packet     int64     // capture packet number (1-based) at which the frame became complete
	Time       time.Time // that packet's timestamp
	Conn       *Conn
	FromClient bool
	Offset     int64 // stream offset of the frame's first header byte
	JSONLen    uint32
	BinaryLen  uint32
	// Msg is the decoded message, nil when the JSON part could not be
	// decoded (see Err). Msg.Binary is only valid during the Handler call.
	Msg *spec.Message
	// Err says why the frame did not decode, or what was wrong with it
	// while still decoding (the character-count length bug).
	Err error
	// CharCount is set when the header's JSON length counted characters;
	// ActualJSONLen is then the JSON's length in bytes.
	CharCount     bool
	ActualJSONLen int
	// Missing lists the frame bytes (offsets within the frame) the capture
	// does not hold: lost segments or snaplen truncation.
	Missing []Range
	// BinaryMD5 is the hex MD5 of the binary part, when it was computed
	// (Options.Verbose or extraction) and no byte of it is missing.
	BinaryMD5 string
	// Request is, for a response, the request it answers; Latency is the
	// time between the two.
	Request *Message
	Latency time.Duration
	// Seq numbers the messages of a connection: 1, 2, ...
	Seq int
}

// IsRequest reports whether the message went from client to server.
func (m *Message) IsRequest() bool { return m.FromClient }

// Operation is the operation field ("" when absent or undecoded).
func (m *Message) Operation() string {
	if m.Msg == nil {
		return ""
	}
	return string(m.Msg.Operation())
}

// Type is the type field.
func (m *Message) Type() string {
	if m.Msg == nil {
		return ""
	}
	return string(m.Msg.Type())
}

// Status is the status field; ok is false when absent.
func (m *Message) Status() (spec.Status, bool) {
	if m.Msg == nil {
		return 0, false
	}
	return m.Msg.Status()
}

// Severity orders notes.
type Severity int

// Severities of a note.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return "info"
}

// Note kinds: what a diagnosis is about.
const (
	NoteCharCount          = "char-count-length"
	NoteOrphanResponse     = "response-without-request"
	NoteUnanswered         = "request-never-answered"
	NoteBlockSize          = "wrong-block-size"
	NoteUploadIncomplete   = "upload-never-completed"
	NoteMD5Mismatch        = "md5-mismatch"
	NoteBytesLost          = "bytes-lost"
	NoteResync             = "resynchronised"
	NoteTruncatedFrame     = "capture-ends-mid-frame"
	NoteSnaplen            = "snaplen-truncated"
	NoteBadFrame           = "undecodable-frame"
	NoteBadPacket          = "undecodable-packet"
	NoteMidStream          = "mid-stream-start"
	NoteDownloadIncomplete = "download-incomplete"
	NoteNoSTEP             = "no-step-traffic"
	NoteOtherPort          = "step-on-other-port"
	NoteCaptureCut         = "capture-ends-mid-transfer"
)

// Note is a diagnosis or a decoding problem, with where it was seen.
type Note struct {
	Packet     int64
	Time       time.Time
	Conn       *Conn // nil for packet-level problems
	FromClient bool
	Offset     int64 // stream offset, -1 when not about a stream position
	Kind       string
	Severity   Severity
	Text       string
}

// Handler receives what the decoder finds, in capture order.
type Handler interface {
	Message(*Message)
	Note(*Note)
	// ConnEnd is called once per connection, after its last message.
	ConnEnd(*Conn)
}
