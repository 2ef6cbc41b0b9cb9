package conformance

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

// Steps shared by the cases: the happy paths other cases build on. Each
// checks what it relies on against the requirement that promises it, so a
// case that cannot get past its set-up names the requirement at fault.

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("conformance: reading random bytes: %v", err))
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// SaveData stores a DATA document under key with the given extra fields
// (name, value pairs) and registers its deletion.
func (s *Session) SaveData(key string, fields ...any) *Reply {
	m := s.KeyReq(spec.OpSave, spec.TypeData, key)
	for i := 0; i+1 < len(fields); i += 2 {
		m.Set(fields[i].(string), fields[i+1])
	}
	r := s.Do(m, "DATA-SAVE-1")
	s.t.Status(r, "DATA-SAVE-1", spec.StatusOK)
	s.t.deleteLater(s, spec.TypeData, key)
	return r
}

// deleteLater deletes key when the case ends, on the session's connection
// while it is still in step with the server.
func (t *T) deleteLater(s *Session, typ spec.Type, key string) {
	t.Defer(func() {
		if s.Conn.closed.Load() || s.Conn.broken {
			return
		}
		_ = t.Try(s.Conn, s.KeyReq(spec.OpDelete, typ, key))
	})
}

// Plan is an upload or download plan.
type Plan struct {
	Key        string
	Size       int64
	BlockSize  int64
	TotalBlock int64
	MD5        string
}

// BlockLen is the length of block i under the plan.
func (p Plan) BlockLen(i int64) int64 { return spec.BlockLen(p.Size, p.BlockSize, i) }

// Block cuts block i of data under the plan.
func (p Plan) Block(data []byte, i int64) []byte {
	start := i * p.BlockSize
	return data[start : start+p.BlockLen(i)]
}

// PlanUpload sends FILE SAVE for key and size and checks the plan under
// FILE-SAVE-1. It registers the key's deletion.
func (s *Session) PlanUpload(key string, size int64) Plan {
	m := s.KeyReq(spec.OpSave, spec.TypeFile, key)
	m.Set(spec.FieldSize, size)
	r := s.Do(m, "FILE-SAVE-1")
	s.t.deleteLater(s, spec.TypeFile, key)
	return s.t.checkPlan(r, "FILE-SAVE-1", key, size)
}

// checkPlan checks an upload plan response.
func (t *T) checkPlan(r *Reply, req, key string, size int64) Plan {
	t.Status(r, req, spec.StatusOK)
	p := Plan{Size: size}
	if key != "" {
		t.Field(r, req, spec.FieldKey, key)
		p.Key = key
	} else {
		p.Key = t.HasString(r, req, spec.FieldKey)
	}
	p.BlockSize = t.HasInt(r, req, spec.FieldBlockSize)
	p.TotalBlock = t.HasInt(r, req, spec.FieldTotalBlock)
	if sz, err := r.Resp.Int(spec.FieldSize); err == nil || r.Resp.Has(spec.FieldSize) {
		t.Check(r, req, err == nil && sz == size, fmt.Sprintf("the plan's size is %s, the request's %d", rawOf(r, spec.FieldSize), size), fmt.Sprintf("size %d", size))
	} else {
		t.Check(r, req, false, "the plan has no size", fmt.Sprintf("size %d", size))
	}
	t.Check(r, req, p.BlockSize >= 1 && p.BlockSize <= spec.MaxBlockSize, fmt.Sprintf("block_size %d is outside 1..%d", p.BlockSize, spec.MaxBlockSize), "block_size in 1..65536")
	want := spec.TotalBlocks(size, p.BlockSize)
	t.Check(r, req, p.TotalBlock == want, fmt.Sprintf("total_block %d, but ceil(%d / %d) = %d", p.TotalBlock, size, p.BlockSize, want), fmt.Sprintf("total_block %d", want))
	return p
}

func rawOf(r *Reply, field string) string {
	if r.Resp == nil {
		return "(none)"
	}
	raw, ok := r.Resp.Raw(field)
	if !ok {
		return "(absent)"
	}
	return string(raw)
}

// UploadBlock sends block i of data under plan p.
func (s *Session) UploadBlock(p Plan, data []byte, i int64, req string) *Reply {
	m := s.KeyReq(spec.OpUpload, spec.TypeFile, p.Key)
	m.Set(spec.FieldBlockIndex, i)
	m.Binary = p.Block(data, i)
	return s.Do(m, req)
}

// UploadRaw sends an UPLOAD of key with the given index (any JSON value)
// and binary part.
func (s *Session) UploadRaw(key string, index any, bin []byte, req string) *Reply {
	m := s.KeyReq(spec.OpUpload, spec.TypeFile, key)
	if index != nil {
		m.Set(spec.FieldBlockIndex, index)
	}
	m.Binary = bin
	return s.Do(m, req)
}

// UploadAll plans key for data and sends every block in order, checking
// each answer under FILE-UPLOAD-1 and the final md5 under FILE-UPLOAD-2.
func (s *Session) UploadAll(key string, data []byte) Plan {
	p := s.PlanUpload(key, int64(len(data)))
	s.SendBlocks(p, data)
	return p
}

// SendBlocks uploads every block of data under p, in order.
func (s *Session) SendBlocks(p Plan, data []byte) {
	t := s.t
	var last *Reply
	for i := int64(0); i < p.TotalBlock; i++ {
		last = s.UploadBlock(p, data, i, "FILE-UPLOAD-1")
		t.Status(last, "FILE-UPLOAD-1", spec.StatusOK)
	}
	if last != nil {
		t.CompletedMD5(last, md5hex(data))
	}
}

// CompletedMD5 checks that the UPLOAD response completing a file carries
// the file's md5.
func (t *T) CompletedMD5(r *Reply, want string) { t.completedMD5(r, "FILE-UPLOAD-2", want) }

// completedMD5 is CompletedMD5 under req: a case about how the blocks were
// sent (CONN-2) blames a wrong md5 on what it checks.
func (t *T) completedMD5(r *Reply, req, want string) bool {
	got, err := r.Resp.MD5()
	if !t.Check(r, req, err == nil, "the response completing the upload has no md5 string", "md5 "+want) {
		return false
	}
	return t.Check(r, req, equalFoldHex(got, want), fmt.Sprintf("md5 %s, but the file sent hashes to %s", got, want), "md5 "+want)
}

func equalFoldHex(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'F' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'F' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// GetPlan sends FILE GET for key and returns the response.
func (s *Session) GetPlan(key, req string) *Reply {
	return s.Do(s.KeyReq(spec.OpGet, spec.TypeFile, key), req)
}

// Download sends FILE DOWNLOAD of block i of key.
func (s *Session) Download(key string, i any, req string) *Reply {
	m := s.KeyReq(spec.OpDownload, spec.TypeFile, key)
	if i != nil {
		m.Set(spec.FieldBlockIndex, i)
	}
	return s.Do(m, req)
}

// VerifyStored checks end to end that key holds data: FILE GET gives the
// plan with the right size and md5, and every block downloads intact. Each
// step is checked against req (the requirement the case relies on).
func (s *Session) VerifyStored(key string, data []byte, req string) {
	t := s.t
	r := s.GetPlan(key, req)
	t.Status(r, req, spec.StatusOK)
	want := md5hex(data)
	got, _ := r.Resp.MD5()
	t.Check(r, req, equalFoldHex(got, want), fmt.Sprintf("FILE GET reports md5 %q, the data uploaded hashes to %s", got, want), "md5 "+want)
	size, _ := r.Resp.Int(spec.FieldSize)
	t.Check(r, req, size == int64(len(data)), fmt.Sprintf("FILE GET reports size %s, %d bytes were uploaded", rawOf(r, spec.FieldSize), len(data)), fmt.Sprintf("size %d", len(data)))
	bs, _ := r.Resp.Int(spec.FieldBlockSize)
	tb, _ := r.Resp.Int(spec.FieldTotalBlock)
	if !t.Check(r, req, bs >= 1 && bs <= spec.MaxBlockSize && tb == spec.TotalBlocks(int64(len(data)), bs),
		fmt.Sprintf("FILE GET plan block_size %s, total_block %s do not fit size %d", rawOf(r, spec.FieldBlockSize), rawOf(r, spec.FieldTotalBlock), len(data)), "a consistent download plan") {
		return
	}
	p := Plan{Key: key, Size: int64(len(data)), BlockSize: bs, TotalBlock: tb}
	for i := int64(0); i < tb; i++ {
		d := s.Download(key, i, req)
		if !t.Status(d, req, spec.StatusOK) {
			return
		}
		block := p.Block(data, i)
		t.Check(d, req, string(d.Resp.Binary) == string(block),
			fmt.Sprintf("block %d downloads as %d bytes (md5 %s), %d bytes (md5 %s) were uploaded", i, len(d.Resp.Binary), md5hex(d.Resp.Binary), len(block), md5hex(block)),
			fmt.Sprintf("block %d as uploaded", i))
	}
}

// Login on a second connection as the same user.
func (s *Session) Again() *Session { return s.t.LoginAs(s.Creds) }
