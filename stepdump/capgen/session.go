package capgen

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// Session writes STEP exchanges on a Conn, as a client and a server that
// follow DECISIONS.md would.
type Session struct {
	*Conn
	User  string
	Token string
	// Think is the server's time to answer.
	Think time.Duration
}

// NewSession wraps c.
func NewSession(c *Conn, user string) *Session {
	return &Session{Conn: c, User: user, Think: 200 * time.Microsecond}
}

// CourseToken builds a token in the course's recipe shape.
func CourseToken(user string, t time.Time) string {
	stamp := t.UTC().Format("20060102150405")
	sum := md5.Sum([]byte(user + "." + stamp + ".login" + "salt"))
	return base64.StdEncoding.EncodeToString([]byte(user + "." + stamp + ".login." + hex.EncodeToString(sum[:])))
}

// Frame encodes m with byte lengths.
func Frame(m *spec.Message) []byte {
	b, err := spec.EncodeFrame(m)
	if err != nil {
		panic(err)
	}
	return b
}

// CharCountFrame encodes m the way the course reference does: the JSON
// length counts characters.
func CharCountFrame(m *spec.Message) []byte {
	b := Frame(m)
	js := b[spec.HeaderLen : len(b)-len(m.Binary)]
	binary.BigEndian.PutUint32(b[0:4], uint32(utf8.RuneCount(js)))
	return b
}

// Request sends a request frame.
func (s *Session) Request(m *spec.Message) { s.Write(true, Frame(m)) }

// Respond sends a response frame after the server's think time.
func (s *Session) Respond(m *spec.Message) {
	s.Wait(s.Think)
	s.Write(false, Frame(m))
}

// Do sends req and its response.
func (s *Session) Do(req, resp *spec.Message) {
	s.Request(req)
	s.Respond(resp)
}

// Login logs in.
func (s *Session) Login() {
	req := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	req.Set(spec.FieldUsername, s.User)
	sum := md5.Sum([]byte(s.User))
	req.Set(spec.FieldPassword, hex.EncodeToString(sum[:]))
	s.Token = CourseToken(s.User, s.Now())
	resp := spec.NewResponse(spec.OpLogin, spec.TypeAuth, spec.StatusOK, "Login successfully")
	resp.Set(spec.FieldToken, s.Token)
	s.Do(req, resp)
}

// Req returns a request carrying the session's token.
func (s *Session) Req(op spec.Operation, t spec.Type) *spec.Message {
	m := spec.NewRequest(op, t)
	m.Set(spec.FieldToken, s.Token)
	return m
}

// Plan is an upload or download plan.
type Plan struct {
	Key       string
	Size      int64
	BlockSize int64
	Total     int64
}

// SavePlan asks for an upload plan of size bytes.
func (s *Session) SavePlan(key string, size, blockSize int64) Plan {
	req := s.Req(spec.OpSave, spec.TypeFile)
	req.Set(spec.FieldKey, key)
	req.Set(spec.FieldSize, size)
	p := Plan{Key: key, Size: size, BlockSize: blockSize, Total: spec.TotalBlocks(size, blockSize)}
	resp := spec.NewResponse(spec.OpSave, spec.TypeFile, spec.StatusOK, "This is the upload plan.")
	resp.Set(spec.FieldKey, key)
	resp.Set(spec.FieldSize, size)
	resp.Set(spec.FieldTotalBlock, p.Total)
	resp.Set(spec.FieldBlockSize, blockSize)
	s.Do(req, resp)
	return p
}

// UploadReq is the request for block idx of data.
func (s *Session) UploadReq(p Plan, idx int64, data []byte) *spec.Message {
	req := s.Req(spec.OpUpload, spec.TypeFile)
	req.Set(spec.FieldKey, p.Key)
	req.Set(spec.FieldBlockIndex, idx)
	start := idx * p.BlockSize
	req.Binary = data[start : start+spec.BlockLen(p.Size, p.BlockSize, idx)]
	return req
}

// UploadResp is the server's answer to block idx; the last carries the MD5.
func (s *Session) UploadResp(p Plan, idx int64, data []byte) *spec.Message {
	resp := spec.NewResponse(spec.OpUpload, spec.TypeFile, spec.StatusOK, "The block is uploaded successfully.")
	resp.Set(spec.FieldKey, p.Key)
	resp.Set(spec.FieldBlockIndex, idx)
	if idx == p.Total-1 {
		sum := md5.Sum(data)
		resp.Set(spec.FieldMD5, hex.EncodeToString(sum[:]))
	}
	return resp
}

// Upload sends every block of data and reads each answer.
func (s *Session) Upload(key string, data []byte, blockSize int64) {
	p := s.SavePlan(key, int64(len(data)), blockSize)
	for i := int64(0); i < p.Total; i++ {
		s.Do(s.UploadReq(p, i, data), s.UploadResp(p, i, data))
	}
}

// Download asks for the plan of a stored file and fetches every block.
func (s *Session) Download(key string, data []byte, blockSize int64) {
	req := s.Req(spec.OpGet, spec.TypeFile)
	req.Set(spec.FieldKey, key)
	sum := md5.Sum(data)
	size := int64(len(data))
	total := spec.TotalBlocks(size, blockSize)
	resp := spec.NewResponse(spec.OpGet, spec.TypeFile, spec.StatusOK, "OK")
	resp.Set(spec.FieldKey, key)
	resp.Set(spec.FieldSize, size)
	resp.Set(spec.FieldTotalBlock, total)
	resp.Set(spec.FieldBlockSize, blockSize)
	resp.Set(spec.FieldMD5, hex.EncodeToString(sum[:]))
	s.Do(req, resp)
	for i := int64(0); i < total; i++ {
		req := s.Req(spec.OpDownload, spec.TypeFile)
		req.Set(spec.FieldKey, key)
		req.Set(spec.FieldBlockIndex, i)
		resp := spec.NewResponse(spec.OpDownload, spec.TypeFile, spec.StatusOK, "OK")
		resp.Set(spec.FieldBlockIndex, i)
		resp.Set(spec.FieldKey, key)
		n := spec.BlockLen(size, blockSize, i)
		resp.Set(spec.FieldSize, n)
		resp.Binary = data[i*blockSize : i*blockSize+n]
		s.Do(req, resp)
	}
}

// Bye says goodbye; the server answers and closes.
func (s *Session) Bye() {
	s.Request(s.Req(spec.OpBye, spec.TypeAuth))
	resp := spec.NewResponse(spec.OpBye, spec.TypeAuth, spec.StatusOK, "Bye")
	s.Respond(resp)
}

// Pattern returns n bytes of a recognisable pattern.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed + byte(i>>8)
	}
	return b
}

// Error builds an error response.
func Error(op spec.Operation, t spec.Type, st spec.Status, msg string) *spec.Message {
	return spec.NewResponse(op, t, st, msg)
}

// String names a packet, for debugging the generator.
func (p *Packet) String() string {
	return fmt.Sprintf("client=%v seq=%d ack=%d len=%d", p.FromClient, p.Seq, p.Ack, len(p.Payload))
}
