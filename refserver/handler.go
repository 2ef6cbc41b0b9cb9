package refserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// maxPlanBlocks is the most blocks an upload plan may have.
const maxPlanBlocks = 1 << 24

// Status messages that clients or people may look for.
const (
	msgUploadPlan   = "This is the upload plan."
	msgDownloadPlan = "OK. This is the download plan."
	msgNotComplete  = "The file is not completely uploaded."
	msgEarth        = "DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!"
)

// handle answers one request. It returns exactly one response, and whether
// the connection closes after it (BYE).
func (c *conn) handle(req *spec.Message) (*spec.Message, bool) {
	resp, closeAfter := c.dispatch(req)
	c.count(req, resp)
	return resp, closeAfter
}

// count records an answered request in the metrics and the debug log.
func (c *conn) count(req, resp *spec.Message) {
	st, _ := resp.Status()
	c.srv.met.request(string(req.Operation()), st)
	if c.debug {
		c.log.Debug("request", "operation", string(req.Operation()), "type", string(req.Type()), "status", int(st),
			"status_msg", resp.StatusMsg())
	}
}

func reply(op spec.Operation, t spec.Type, st spec.Status, msg string) *spec.Message {
	return spec.NewResponse(op, t, st, msg)
}

func (c *conn) dispatch(req *spec.Message) (*spec.Message, bool) {
	// The reference's checks, in its order.
	if req.Direction() == spec.DirEarth {
		return reply(spec.Op3Body, spec.TypeDangerous, spec.Status3Body, msgEarth), false
	}
	for _, f := range []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType} {
		if !req.Has(f) {
			return reply(spec.OpError, spec.TypeError, spec.StatusCompulsory, fmt.Sprintf("Compulsory field %s is missing.", f)), false
		}
	}
	if req.Direction() != spec.DirRequest {
		return reply(spec.OpError, spec.TypeError, spec.StatusWrongDirection, `Wrong direction. Should be "REQUEST".`), false
	}
	op, typ := req.Operation(), req.Type()
	if !op.Valid() {
		return reply(spec.OpError, spec.TypeError, spec.StatusWrongOperation, "Operation is not allowed."), false
	}
	if !typ.Valid() {
		return reply(spec.OpError, spec.TypeError, spec.StatusTypeNotAllowed, "Type is not allowed."), false
	}
	switch {
	case op == spec.OpLogin:
		return c.login(req), false
	case op == spec.OpBye:
		return reply(spec.OpBye, typ, spec.StatusOK, "Bye."), true
	case typ == spec.TypeAuth:
		return reply(op, spec.TypeAuth, spec.StatusTypeNotAllowed, fmt.Sprintf("Type AUTH is only for LOGIN, not %s.", op)), false
	}
	user, resp := c.checkToken(req, op)
	if resp != nil {
		return resp, false
	}
	if s := c.srv; s.cfg.RateLimit > 0 && !s.user(user).limiter.Allow() {
		return reply(op, typ, spec.StatusTooManyRequests, "Too many requests: rate limit reached, slow down."), false
	}
	if typ == spec.TypeData {
		return c.data(req, op, user), false
	}
	return c.file(req, op, user), false
}

func (c *conn) login(req *spec.Message) *spec.Message {
	fail := func(st spec.Status, msg string) *spec.Message {
		return reply(spec.OpLogin, spec.TypeAuth, st, msg)
	}
	if req.Type() != spec.TypeAuth {
		return fail(spec.StatusTypeNotAllowed, "Type of LOGIN has to be AUTH.")
	}
	if !req.Has(spec.FieldUsername) {
		return fail(spec.StatusFieldMissing, `"username" has to be a field for LOGIN.`)
	}
	if !req.Has(spec.FieldPassword) {
		return fail(spec.StatusFieldMissing, `"password" has to be a field for LOGIN.`)
	}
	username, err := req.Username()
	if err != nil {
		return fail(spec.StatusFieldMissing, `"username" has to be a string.`)
	}
	password, err := req.Password()
	if err != nil {
		return fail(spec.StatusFieldMissing, `"password" has to be a string.`)
	}
	if username == "" {
		return fail(spec.StatusFieldMissing, `"username" must not be empty.`)
	}
	if err := checkName(TokenUser(username)); err != nil {
		return fail(spec.StatusFieldMissing, fmt.Sprintf(`"username" cannot be used: %v.`, err))
	}
	// Password checks are costly in account mode: they share the user's
	// rate limit.
	if s := c.srv; s.cfg.RateLimit > 0 && !s.user(TokenUser(username)).limiter.Allow() {
		return fail(spec.StatusTooManyRequests, "Too many requests: rate limit reached, slow down.")
	}
	token, ok := c.srv.auth.login(username, password, c.srv.cfg.Now())
	if !ok {
		c.log.Info("login refused", "username", username)
		return fail(spec.StatusPasswordError, "Password error for login.")
	}
	c.log.Info("login", "username", username)
	resp := fail(spec.StatusOK, "Login successfully.").Set(spec.FieldToken, token).Set(fieldPipelining, true)
	if max := c.srv.cfg.MaxBlockSize; max > 0 {
		resp.Set(spec.FieldMaxBlockSize, max)
	}
	if w := c.srv.uploadWindow(); w > 0 {
		resp.Set(spec.FieldUploadWindow, w)
	}
	return resp
}

// planBlockSize is the block_size of a plan (FILE SAVE, FILE GET) or of the
// plan a FILE DOWNLOAD follows: the configured one, or the one the request
// asks for when the server offers the choice (EXT-7), at most its maximum.
func (c *conn) planBlockSize(req *spec.Message, op spec.Operation) (int64, *spec.Message) {
	cfg := &c.srv.cfg
	if cfg.MaxBlockSize <= 0 || !req.Has(spec.FieldBlockSize) {
		return int64(cfg.BlockSize), nil
	}
	n, err := req.BlockSize()
	if err != nil || n < 1 {
		return 0, reply(op, spec.TypeFile, spec.StatusFieldMissing, `Field "block_size" has to be a positive integer.`)
	}
	return min(n, int64(cfg.MaxBlockSize)), nil
}

// fieldPipelining advertises pipelining in the LOGIN response (EXT-6): the
// server reads exact frame lengths, so requests sent before earlier answers
// were read are each answered however TCP cut them up.
const fieldPipelining = spec.FieldPipelining

// checkToken returns the user a request's token names, or the 403 answer.
func (c *conn) checkToken(req *spec.Message, op spec.Operation) (string, *spec.Message) {
	deny := func(msg string) (string, *spec.Message) {
		return "", reply(op, spec.TypeAuth, spec.StatusTokenError, msg)
	}
	if !req.Has(spec.FieldToken) {
		return deny("No token.")
	}
	now := c.srv.cfg.Now()
	// The token sent with every block is compared as sent, without
	// decoding it again.
	if raw, _ := req.Raw(spec.FieldToken); c.tokenJSON != nil && string(raw) == string(c.tokenJSON) &&
		(c.tokenExpires.IsZero() || now.Before(c.tokenExpires)) {
		return c.tokenUser, nil
	}
	token, err := req.Token()
	if err != nil {
		return deny("Token is wrong: not a string.")
	}
	user, expires, err := c.srv.auth.verify(token, now)
	if err != nil {
		c.log.Info("token refused", "err", err)
		// The reason follows ErrBadToken's own text in err.
		return deny(fmt.Sprintf("Token is wrong: %s.", strings.TrimPrefix(err.Error(), ErrBadToken.Error()+": ")))
	}
	if err := checkName(user); err != nil || user[0] == '.' {
		c.log.Warn("token names an unusable user", "user", user)
		return deny("Token is wrong: unusable user name.")
	}
	raw, _ := req.Raw(spec.FieldToken)
	c.tokenJSON, c.tokenUser, c.tokenExpires = append(c.tokenJSON[:0], raw...), user, expires
	return user, nil
}

// fileKey is key for the FILE requests of a transfer: the key each block
// names is the last one's, so its checked string is kept and compared as
// sent, without decoding it again.
func (c *conn) fileKey(req *spec.Message, op spec.Operation) (string, *spec.Message) {
	if raw, ok := req.Raw(spec.FieldKey); ok && c.keyJSON != nil && string(raw) == string(c.keyJSON) {
		return c.key, nil
	}
	k, resp := key(req, op, spec.TypeFile)
	if resp == nil {
		raw, _ := req.Raw(spec.FieldKey)
		c.keyJSON, c.key = append(c.keyJSON[:0], raw...), k
	}
	return k, resp
}

// key returns the request's key, or the 410 answer when it is missing or
// unusable.
func key(req *spec.Message, op spec.Operation, t spec.Type) (string, *spec.Message) {
	if !req.Has(spec.FieldKey) {
		return "", reply(op, t, spec.StatusFieldMissing, `Field "key" is missing.`)
	}
	k, err := req.Key()
	if err != nil {
		return "", reply(op, t, spec.StatusFieldMissing, `Field "key" has to be a string.`)
	}
	if err := CheckKey(k); err != nil {
		return "", reply(op, t, spec.StatusFieldMissing, fmt.Sprintf(`Field "key" cannot be used: %v.`, err))
	}
	return k, nil
}

// newKey returns the request's key, or a new UUID when it has none.
func newKey(req *spec.Message, op spec.Operation, t spec.Type) (string, *spec.Message) {
	if !req.Has(spec.FieldKey) {
		return uuid.NewString(), nil
	}
	return key(req, op, t)
}

func (c *conn) internal(op spec.Operation, t spec.Type, what string, err error) *spec.Message {
	if noSpace(err) {
		return c.full(op, t, what, err)
	}
	c.log.Error(what, "err", err)
	return reply(op, t, spec.StatusInternalError, "Storage failure: "+what+".")
}

// ---- DATA ----

func (c *conn) data(req *spec.Message, op spec.Operation, user string) *spec.Message {
	const t = spec.TypeData
	s := c.srv
	switch op {
	case spec.OpSave:
		k, resp := newKey(req, op, t)
		if resp != nil {
			return resp
		}
		doc := req.Clone()
		doc.Delete(spec.FieldToken)
		doc.Binary = nil
		b := doc.AppendJSON(nil)
		ok, err := s.reserve(user, int64(len(b)))
		if err != nil {
			return c.internal(op, t, "quota", err)
		}
		if !ok {
			return reply(op, t, spec.StatusTooLarge, "Quota exceeded.")
		}
		unlock := s.store.Lock(user, k)
		err = s.store.SaveData(user, k, b)
		unlock()
		if err != nil {
			s.release(user, int64(len(b)))
			if errors.Is(err, storage.ErrExists) {
				return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q is existing.", k)).Set(spec.FieldKey, k)
			}
			return c.internal(op, t, "save document", err)
		}
		return reply(op, t, spec.StatusOK, "Data saved.").Set(spec.FieldKey, k)

	case spec.OpGet:
		k, resp := key(req, op, t)
		if resp != nil {
			return resp
		}
		b, err := s.store.Data(user, k)
		if errors.Is(err, storage.ErrNotFound) {
			return reply(op, t, spec.StatusKeyNotFound, fmt.Sprintf("The key %q is not found.", k))
		}
		if err != nil {
			return c.internal(op, t, "read document", err)
		}
		doc, err := spec.ParseMessage(b)
		if err != nil {
			return c.internal(op, t, "parse document", err)
		}
		doc.Set(spec.FieldOperation, string(op)).Set(spec.FieldDirection, string(spec.DirResponse)).
			Set(spec.FieldType, string(t)).Set(spec.FieldStatus, int(spec.StatusOK)).
			Set(spec.FieldStatusMsg, "Data found.").Set(spec.FieldKey, k)
		return doc

	case spec.OpDelete:
		k, resp := key(req, op, t)
		if resp != nil {
			return resp
		}
		unlock := s.store.Lock(user, k)
		n, err := s.store.DeleteData(user, k)
		unlock()
		if errors.Is(err, storage.ErrNotFound) {
			return reply(op, t, spec.StatusKeyNotFound, fmt.Sprintf("The key %q is not found.", k))
		}
		if err != nil {
			return c.internal(op, t, "delete document", err)
		}
		s.release(user, n)
		return reply(op, t, spec.StatusOK, "Data deleted.").Set(spec.FieldKey, k)
	}
	return reply(op, t, spec.StatusWrongOperation, fmt.Sprintf("Operation %s is not allowed for DATA.", op))
}

// ---- FILE ----

func (c *conn) file(req *spec.Message, op spec.Operation, user string) *spec.Message {
	switch op {
	case spec.OpSave:
		return c.fileSave(req, user)
	case spec.OpUpload:
		return c.fileUpload(req, user)
	case spec.OpGet:
		return c.fileGet(req, user)
	case spec.OpDownload:
		return c.fileDownload(req, user)
	case spec.OpDelete:
		return c.fileDelete(req, user)
	}
	return reply(op, spec.TypeFile, spec.StatusWrongOperation, fmt.Sprintf("Operation %s is not allowed for FILE.", op))
}

func (c *conn) fileSave(req *spec.Message, user string) *spec.Message {
	const op, t = spec.OpSave, spec.TypeFile
	s := c.srv
	k, resp := newKey(req, op, t)
	if resp != nil {
		return resp
	}
	// The reference's order: an existing key first, then the size.
	unlock := s.store.Lock(user, k)
	defer func() { unlock() }()
	if _, err := s.store.CompletedLocked(user, k); err == nil {
		return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q is existing.", k)).Set(spec.FieldKey, k)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return c.internal(op, t, "look up file", err)
	}
	if !req.Has(spec.FieldSize) {
		return reply(op, t, spec.StatusFieldMissing, `Field "size" is missing.`)
	}
	size, err := req.Size()
	if err != nil {
		return reply(op, t, spec.StatusFieldMissing, `Field "size" has to be a non-negative integer.`)
	}
	bs, resp := c.planBlockSize(req, op)
	if resp != nil {
		return resp
	}
	if size > s.cfg.MaxFileSize {
		return reply(op, t, spec.StatusTooLarge, fmt.Sprintf("File too large: at most %d bytes.", s.cfg.MaxFileSize))
	}
	// The progress of an upload takes a byte per block in memory.
	if spec.TotalBlocks(size, bs) > maxPlanBlocks {
		return reply(op, t, spec.StatusTooLarge, fmt.Sprintf("File too large: at most %d blocks of %d bytes.", maxPlanBlocks, bs))
	}
	var old int64
	u, err := s.store.Upload(user, k)
	if err == nil {
		old = u.Plan().Size
	} else if !errors.Is(err, storage.ErrNotFound) {
		return c.internal(op, t, "look up upload", err)
	}
	ok, err := s.reserve(user, size-old)
	if err != nil {
		return c.internal(op, t, "quota", err)
	}
	if !ok {
		return reply(op, t, spec.StatusTooLarge, "Quota exceeded.")
	}
	if size == 0 {
		if u != nil {
			if err := s.store.DropUpload(user, k, u); err != nil {
				return c.internal(op, t, "remove upload", err)
			}
		}
		m, err := s.store.CreateEmpty(user, k)
		if errors.Is(err, storage.ErrExists) {
			// Another server created the key meanwhile.
			s.release(user, size-old)
			return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q is existing.", k)).Set(spec.FieldKey, k)
		}
		if err != nil {
			return c.internal(op, t, "create empty file", err)
		}
		s.met.uploadDone()
		return reply(op, t, spec.StatusOK, msgUploadPlan).Set(spec.FieldKey, k).Set(spec.FieldSize, 0).
			Set(spec.FieldTotalBlock, 0).Set(spec.FieldBlockSize, bs).Set(spec.FieldMD5, m.MD5)
	}
	plan, _, err := s.store.PlanUpload(user, k, size, bs, s.cfg.Now())
	if noSpace(err) {
		// Idle uploads may give their room; the key's lock is let go
		// meanwhile, since sweeping takes the locks of other keys.
		unlock()
		swept := s.makeRoom()
		unlock = s.store.Lock(user, k)
		if swept {
			if _, cerr := s.store.CompletedLocked(user, k); cerr == nil {
				s.release(user, size-old)
				return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q is existing.", k)).Set(spec.FieldKey, k)
			}
			plan, _, err = s.store.PlanUpload(user, k, size, bs, s.cfg.Now())
		}
	}
	if errors.Is(err, storage.ErrExists) {
		// A storage shared by several servers: another server completed
		// the key, or planned it again at each attempt, between our look
		// and our write.
		s.release(user, size-old)
		if _, cerr := s.store.CompletedLocked(user, k); cerr == nil {
			return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q is existing.", k)).Set(spec.FieldKey, k)
		}
		return reply(op, t, spec.StatusKeyExists, fmt.Sprintf("The key %q was planned at the same time by another request.", k)).Set(spec.FieldKey, k)
	}
	if err != nil {
		s.release(user, size-old)
		return c.internal(op, t, "plan upload", err)
	}
	if u != nil {
		c.log.Info("upload restarted", "user", user, "key", k, "size", size)
	}
	return reply(op, t, spec.StatusOK, msgUploadPlan).Set(spec.FieldKey, k).Set(spec.FieldSize, plan.Size).
		Set(spec.FieldTotalBlock, plan.TotalBlock).Set(spec.FieldBlockSize, plan.BlockSize)
}

// noPlan answers an UPLOAD to a key without an upload in progress.
func (c *conn) noPlan(user, k string) *spec.Message {
	const op, t = spec.OpUpload, spec.TypeFile
	s := c.srv
	unlock := s.store.Lock(user, k)
	defer unlock()
	if _, err := s.store.CompletedLocked(user, k); err == nil {
		return reply(op, t, spec.StatusWrongOperation, fmt.Sprintf("The file %q is already completely uploaded.", k)).Set(spec.FieldKey, k)
	}
	return reply(op, t, spec.StatusWrongOperation, fmt.Sprintf("The key %q has no upload plan: send FILE SAVE first.", k)).Set(spec.FieldKey, k)
}

// blockIndex returns the request's block_index, or the 410 answer.
func blockIndex(req *spec.Message, op spec.Operation) (int64, *spec.Message) {
	if !req.Has(spec.FieldBlockIndex) {
		return 0, reply(op, spec.TypeFile, spec.StatusFieldMissing, `Field "block_index" is missing.`)
	}
	i, err := req.BlockIndex()
	if err != nil {
		return 0, reply(op, spec.TypeFile, spec.StatusFieldMissing, `Field "block_index" has to be an integer.`)
	}
	return i, nil
}

// checkIndex answers an index outside 0..total-1.
func checkIndex(op spec.Operation, i, total int64) *spec.Message {
	if i < 0 {
		return reply(op, spec.TypeFile, spec.StatusFieldMissing, `Field "block_index" must not be negative.`)
	}
	if i >= total {
		return reply(op, spec.TypeFile, spec.StatusBlockIndexRange,
			fmt.Sprintf("The block_index %d is over the maximum block number (total_block %d).", i, total))
	}
	return nil
}

func (c *conn) fileUpload(req *spec.Message, user string) *spec.Message {
	const op, t = spec.OpUpload, spec.TypeFile
	s := c.srv
	k, resp := c.fileKey(req, op)
	if resp != nil {
		return resp
	}
	noPlan := func() *spec.Message { return c.noPlan(user, k) }
	unlock := s.store.Lock(user, k)
	u, err := s.store.Upload(user, k)
	unlock()
	if errors.Is(err, storage.ErrNotFound) {
		return noPlan()
	}
	if err != nil {
		return c.internal(op, t, "look up upload", err)
	}
	i, resp := blockIndex(req, op)
	if resp != nil {
		return resp
	}
	if resp := checkIndex(op, i, u.Plan().TotalBlock); resp != nil {
		return resp
	}
	if c.collect != nil {
		// Part of a run (serveRun): stored with the others.
		if want := spec.BlockLen(u.Plan().Size, u.Plan().BlockSize, i); int64(len(req.Binary)) != want {
			return reply(op, t, spec.StatusBlockSize, fmt.Sprintf("The block is %d bytes; block %d of this plan has %d.",
				len(req.Binary), i, want)).Set(spec.FieldKey, k).Set(spec.FieldBlockIndex, i)
		}
		*c.collect = append(*c.collect, uploadItem{user: user, key: k, u: u, index: i, block: req.Binary, gather: c.gathers(req)})
		return nil
	}
	// The storage takes the key's lock itself: it may store blocks of one
	// upload from several connections at once.
	var m *storage.FileMeta
	if bw, ok := s.store.(storage.BatchWriter); ok {
		// The record of the block may wait for the next write of
		// answers, which commits it first (conn.flush).
		m, err = bw.WriteBlockBatched(user, k, u, i, req.Binary, s.cfg.Now())
		if err == nil && m == nil {
			c.hold(user, k, u)
		}
	} else {
		m, err = s.store.WriteBlock(user, k, u, i, req.Binary, s.cfg.Now())
	}
	if errors.Is(err, storage.ErrBlockLen) {
		return reply(op, t, spec.StatusBlockSize, fmt.Sprintf("The block is %d bytes; block %d of this plan has %d.",
			len(req.Binary), i, spec.BlockLen(u.Plan().Size, u.Plan().BlockSize, i))).Set(spec.FieldKey, k).Set(spec.FieldBlockIndex, i)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return noPlan() // removed, replaced or completed meanwhile
	}
	if err != nil {
		return c.internal(op, t, "store block", err)
	}
	if c.ack == nil {
		c.ack = spec.NewResponse(op, t, spec.StatusOK, "")
	}
	// The answer is reused: it is encoded before the next request is read.
	return c.uploadedInto(c.ack, user, k, i, m)
}

// uploaded is the answer to an UPLOAD whose block was stored; m is set
// when it completed the file.
func (c *conn) uploaded(user, k string, i int64, m *storage.FileMeta) *spec.Message {
	return c.uploadedInto(spec.NewResponse(spec.OpUpload, spec.TypeFile, spec.StatusOK, ""), user, k, i, m)
}

// uploadedInto makes resp that answer.
func (c *conn) uploadedInto(resp *spec.Message, user, k string, i int64, m *storage.FileMeta) *spec.Message {
	const op, t = spec.OpUpload, spec.TypeFile
	resp = resp.ResetResponse(op, t, spec.StatusOK, "The block is uploaded.").SetString(spec.FieldKey, k).SetInt(spec.FieldBlockIndex, i)
	if m != nil {
		c.srv.met.uploadDone()
		c.log.Info("upload completed", "user", user, "key", k, "size", m.Size, "md5", m.MD5)
		resp.Set(spec.FieldStatusMsg, "The file is completely uploaded.").Set(spec.FieldMD5, m.MD5)
	}
	return resp
}

func (c *conn) fileGet(req *spec.Message, user string) *spec.Message {
	const op, t = spec.OpGet, spec.TypeFile
	k, resp := key(req, op, t)
	if resp != nil {
		return resp
	}
	m, resp := c.lookupCompleted(op, user, k)
	if resp != nil {
		return resp
	}
	bs, resp := c.planBlockSize(req, op)
	if resp != nil {
		return resp
	}
	return reply(op, t, spec.StatusOK, msgDownloadPlan).Set(spec.FieldKey, k).Set(spec.FieldSize, m.Size).
		Set(spec.FieldTotalBlock, spec.TotalBlocks(m.Size, bs)).Set(spec.FieldBlockSize, bs).Set(spec.FieldMD5, m.MD5)
}

// lookupCompleted returns a completed file's metadata, or the 404 answer
// (saying so when the upload is still in progress). FILE GET asks the
// storage; DOWNLOAD, sent for every block, may be answered from what the
// server saw of the file a moment ago (Backend.Completed).
func (c *conn) lookupCompleted(op spec.Operation, user, k string) (*storage.FileMeta, *spec.Message) {
	s := c.srv
	var m *storage.FileMeta
	var err error
	if op == spec.OpGet {
		unlock := s.store.Lock(user, k)
		m, err = s.store.CompletedLocked(user, k)
		unlock()
	} else {
		m, err = s.store.Completed(user, k)
	}
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, c.internal(op, spec.TypeFile, "look up file", err)
	}
	unlock := s.store.Lock(user, k)
	_, uerr := s.store.Upload(user, k)
	unlock()
	if uerr == nil {
		return nil, reply(op, spec.TypeFile, spec.StatusKeyNotFound, msgNotComplete).Set(spec.FieldKey, k)
	}
	return nil, reply(op, spec.TypeFile, spec.StatusKeyNotFound, fmt.Sprintf("The key %q is not found.", k)).Set(spec.FieldKey, k)
}

func (c *conn) fileDownload(req *spec.Message, user string) *spec.Message {
	const op, t = spec.OpDownload, spec.TypeFile
	s := c.srv
	k, resp := c.fileKey(req, op)
	if resp != nil {
		return resp
	}
	m, resp := c.lookupCompleted(op, user, k)
	if resp != nil {
		return resp
	}
	i, resp := blockIndex(req, op)
	if resp != nil {
		return resp
	}
	bs, resp := c.planBlockSize(req, op)
	if resp != nil {
		return resp.Set(spec.FieldKey, k)
	}
	if resp := checkIndex(op, i, spec.TotalBlocks(m.Size, bs)); resp != nil {
		return resp.Set(spec.FieldKey, k)
	}
	if c.dlMeta != m || c.dlUser != user || c.dlKey != k {
		if c.dlFile != nil {
			c.dlFile.Close()
			c.dlFile, c.dlMeta = nil, nil
		}
		f, err := s.store.OpenCompleted(user, k, m)
		if errors.Is(err, storage.ErrNotFound) {
			return reply(op, t, spec.StatusKeyNotFound, fmt.Sprintf("The key %q is not found.", k)).Set(spec.FieldKey, k)
		}
		if err != nil {
			return c.internal(op, t, "open file", err)
		}
		c.dlFile, c.dlMeta, c.dlUser, c.dlKey = f, m, user, k
	}
	n := spec.BlockLen(m.Size, bs, i)
	if c.ack == nil {
		c.ack = spec.NewResponse(op, t, spec.StatusOK, "")
	}
	resp = c.ack.ResetResponse(op, t, spec.StatusOK, "An available block.").SetInt(spec.FieldBlockIndex, i).
		SetString(spec.FieldKey, k).SetInt(spec.FieldSize, n)
	// A large block for a client that chose its block size (EXT-7), and
	// so reads frames by their lengths, goes by sendfile after the header:
	// two writes, which course clients reading a reply with one recv
	// (FRAME-6) never see.
	if f, ok := c.dlFile.(*os.File); ok && n >= sendfileMin && req.Has(spec.FieldBlockSize) && s.cfg.MaxBlockSize > 0 {
		if _, tcp := c.nc.(*net.TCPConn); tcp {
			c.fromFile.f, c.fromFile.off, c.fromFile.n = f, i*bs, n
			return resp
		}
	}
	if int64(cap(c.blk)) < n {
		c.blk = make([]byte, n)
	}
	blk := c.blk[:n]
	if _, err := c.dlFile.ReadAt(blk, i*bs); err != nil && err != io.EOF {
		return c.internal(op, t, "read block", err)
	}
	resp.Binary = blk
	return resp
}

// sendfileMin is the smallest block sent by sendfile: below it, reading
// the block and writing it with the header in one writev costs less.
const sendfileMin = 64 << 10

func (c *conn) fileDelete(req *spec.Message, user string) *spec.Message {
	const op, t = spec.OpDelete, spec.TypeFile
	s := c.srv
	k, resp := key(req, op, t)
	if resp != nil {
		return resp
	}
	unlock := s.store.Lock(user, k)
	n, err := s.store.DeleteFile(user, k)
	unlock()
	switch {
	case errors.Is(err, storage.ErrInProgress):
		s.release(user, n)
		return reply(op, t, spec.StatusKeyNotFound, "The file was not completely uploaded; the partial upload is removed.").Set(spec.FieldKey, k)
	case errors.Is(err, storage.ErrNotFound):
		return reply(op, t, spec.StatusKeyNotFound, fmt.Sprintf("The key %q is not found.", k)).Set(spec.FieldKey, k)
	case err != nil:
		return c.internal(op, t, "delete file", err)
	}
	s.release(user, n)
	return reply(op, t, spec.StatusOK, "The file is deleted.").Set(spec.FieldKey, k)
}
