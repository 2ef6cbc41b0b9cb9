package refserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// conn is one client connection, served by one goroutine: requests are
// read, handled and answered strictly in order.
type conn struct {
	srv   *Server
	nc    net.Conn
	id    uint64
	ip    string // remote address, for the per-address cap
	log   *slog.Logger
	debug bool

	// idle is set while waiting for the first byte of the next request;
	// Shutdown closes only idle connections.
	idle atomic.Bool

	// What the server looks at when another address needs its place at
	// the connection limit (see unproductive): when it became idle, when
	// the frame it is receiving began (0 while its request is served) and
	// how many of its bytes arrived, whether it waits for frame memory.
	idleSince  atomic.Int64 // unix nanoseconds
	frameSince atomic.Int64 // unix nanoseconds
	frameGot   atomic.Int64
	memWait    atomic.Bool
	// evicted is set when the connection's place was given to another
	// address: it answers 503 and closes at its next read. uncounted (under
	// srv.mu) says its place is no longer counted.
	evicted   atomic.Bool
	uncounted bool

	r        *spec.Reader
	fl       frameLimiter
	requests int    // requests answered
	sent     int64  // bytes of responses written
	wbuf     []byte // responses not written yet (see send)
	vecArr   [2][]byte
	vec      net.Buffers // a vectored write of wbuf and a block
	blk      []byte      // reused block buffer of DOWNLOAD
	// fromFile, when n > 0, is the block the next answer carries, sent
	// from the file by sendfile instead of from blk (see fileDownload).
	fromFile struct {
		f      *os.File
		off, n int64
	}
	lr io.LimitedReader

	// Uploads with blocks whose record waits for the next flush
	// (storage.BatchWriter).
	held []heldUpload

	// The key of the last FILE UPLOAD or DOWNLOAD, as sent and checked.
	keyJSON []byte
	key     string
	// req is every request read, reused: a request is handled before the
	// next is read. ack is the answer to every stored UPLOAD block.
	req, ack *spec.Message

	// The last token verified, so that a token sent with every block is
	// checked once.
	tokenJSON    []byte // as sent, JSON quotes included
	tokenUser    string
	tokenExpires time.Time

	// inq reads the bytes waiting in the socket (see inSocket).
	inq inqReader

	// runs is set when the storage stores a run of blocks in one write
	// (storage.RunWriter): pipelined UPLOADs of consecutive blocks are
	// then taken together (serveRun). collect gathers their blocks while
	// they are dispatched; pending holds a request (or read error) read
	// ahead that did not belong to the run.
	runs        bool
	br          *bufio.Reader // under r, when runs is set
	collect     *[]uploadItem
	pending     bool
	flights     []*flight // runs on their way to the storage, oldest first
	pendReq     *spec.Message
	window      int64 // the window the client keeps in flight, for gathered blocks (EXT-8)
	pendErr     error
	pendTraffic int

	// The completed file DOWNLOAD read last, kept open between blocks.
	dlMeta *storage.FileMeta
	dlUser string
	dlKey  string
	dlFile storage.File
}

func (s *Server) newConn(nc net.Conn, id uint64) *conn {
	c := &conn{srv: s, nc: nc, id: id, req: spec.NewMessage()}
	c.log = s.log.With("conn", id)
	c.debug = c.log.Enabled(context.Background(), slog.LevelDebug)
	if _, ok := s.store.(storage.RunWriter); ok {
		c.runs = true
	}
	c.r = c.newReader()
	return c
}

// newReader returns the connection's frame reader: with room for a window
// of pipelined blocks when UPLOADs are taken in runs, so that a run can be
// seen whole.
func (c *conn) newReader() *spec.Reader {
	if c.runs {
		size := max(64<<10, (maxRun+1)*(c.srv.cfg.BlockSize+1024))
		c.br = bufio.NewReaderSize(connReader{c}, size)
		return spec.NewReader(c.br, c.srv.cfg.Limits)
	}
	return spec.NewReader(connReader{c}, c.srv.cfg.Limits)
}

func (c *conn) serve() {
	s := c.srv
	s.met.connOpened()
	c.log.Info("connection opened", "remote", c.nc.RemoteAddr().String())
	defer func() {
		c.waitFlights()
		if c.dlFile != nil {
			c.dlFile.Close()
		}
		c.nc.Close()
		c.releaseFrames()
		s.mu.Lock()
		delete(s.conns, c)
		s.uncountLocked(c)
		s.mu.Unlock()
		s.met.connClosed()
		s.connWG.Done()
	}()
	reason := c.loop()
	c.log.Info("connection closed", "reason", reason, "requests", c.requests, "received", c.fl.before+c.r.Offset(), "sent", c.sent)
}

// loop serves requests until the connection ends and says why it ended.
func (c *conn) loop() string {
	s := c.srv
	cfg := &s.cfg
	for {
		// Answers held back for a pipelined request, and those of runs
		// being stored, go out before any wait for the peer (they are
		// held only while the next request is whole). Runs land one at
		// a time: the answers to the oldest let the client send more
		// while the others are stored.
		for len(c.flights) > 0 && !c.nextReady() {
			if f := c.flights[0]; f.gathered && c.waitGathered(f) {
				break // bytes came: maybe the rest of the flight's parts
			}
			if !c.land(1) {
				return "write failed"
			}
		}
		if len(c.wbuf) > 0 && !c.nextReady() && !c.flush(nil) {
			return "write failed"
		}
		var req *spec.Message
		var err error
		if c.pending {
			// Read ahead by serveRun.
			req, err = c.pendReq, c.pendErr
			s.met.traffic(c.pendTraffic, 0)
			c.pending, c.pendReq, c.pendErr = false, nil, nil
		} else {
			if n := c.r.Buffered(); n > 0 {
				c.idle.Store(false)
				c.beginFrame(n)
			} else {
				c.idleShrink()
				c.frameSince.Store(0)
				c.idleSince.Store(time.Now().UnixNano())
				c.idle.Store(true)
				c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
				if s.inShutdown.Load() {
					return "server shutting down"
				}
			}
			before := c.r.Offset()
			req, err = c.r.ReadMessageInto(c.req)
			s.met.traffic(int(c.r.Offset()-before), 0)
			c.frameDone(c.r.Offset() - before - spec.HeaderLen)
		}
		if err != nil {
			var fe *spec.FrameError
			switch {
			case c.evicted.Load():
				// The answers to blocks already stored go out first:
				// the client need not send them again.
				if !c.landAll() {
					return "write failed"
				}
				c.send(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusServiceBusy,
					"Server busy: this connection was closed to make room for another address, try again later."), true)
				lingerClose(c.nc)
				return "closed to make room for another address"
			case errors.As(err, &fe) && errors.Is(err, spec.ErrCharCountLength) && fe.Recovered != nil:
				c.log.Warn("frame length counts characters, not bytes; serving the request it meant", "offset", fe.Offset,
					"header_json_len", fe.JSONLen, "json_bytes", fe.ActualJSONLen)
				s.met.frameError("char_count_length")
				req = fe.Recovered
			case errors.As(err, &fe) && fe.Resumable():
				c.log.Warn("malformed frame", "err", err)
				s.met.frameError("malformed")
				if !c.send(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusCompulsory,
					"Malformed frame: "+fe.Err.Error()+"."), false) {
					return "write failed"
				}
				continue
			case errors.Is(err, spec.ErrJSONTooLarge) || errors.Is(err, spec.ErrBinaryTooLarge):
				c.log.Warn("frame over the limits", "err", err)
				s.met.frameError("too_large")
				c.send(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusTooLarge,
					"Frame too large: "+err.Error()+"."), true)
				lingerClose(c.nc)
				return "frame too large"
			case err == io.EOF:
				return "closed by client"
			case errors.Is(err, spec.ErrTruncatedHeader) || errors.Is(err, spec.ErrTruncatedBody):
				s.met.frameError("truncated")
				return "closed by client inside a frame"
			case isTimeout(err):
				if s.inShutdown.Load() && c.idle.Load() {
					return "server shutting down"
				}
				if c.idle.Load() {
					return "idle timeout"
				}
				s.met.frameError("read_timeout")
				return "read timeout inside a frame"
			default:
				if s.inShutdown.Load() {
					return "server shutting down"
				}
				return "read failed: " + err.Error()
			}
		}
		c.idle.Store(false)
		c.requests++
		if c.runs && startsRun(req) {
			if !c.serveRun(req) {
				return "write failed"
			}
			continue
		}
		// Any other request is answered after the runs before it.
		if !c.landAll() {
			return "write failed"
		}
		resp, closeAfter := c.handle(req)
		if !c.send(resp, closeAfter) {
			return "write failed"
		}
		if closeAfter {
			lingerClose(c.nc)
			return "BYE"
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// heldUpload is an upload with blocks stored but not yet recorded.
type heldUpload struct {
	user, key string
	u         storage.Upload
}

// hold notes that u has blocks to commit before their answers leave.
func (c *conn) hold(user, key string, u storage.Upload) {
	if n := len(c.held); n > 0 && c.held[n-1].u == u {
		return
	}
	c.held = append(c.held, heldUpload{user, key, u})
}

// commit records the blocks held back, so that no answer acknowledges a
// block a crash would forget.
func (c *conn) commit() error {
	if len(c.held) == 0 {
		return nil
	}
	bw := c.srv.store.(storage.BatchWriter)
	for i, h := range c.held {
		unlock := c.srv.store.Lock(h.user, h.key)
		err := bw.CommitBlocks(h.user, h.key, h.u)
		unlock()
		if err != nil {
			c.held = c.held[:0]
			return fmt.Errorf("record the blocks of %s/%s: %w", h.user, h.key, err)
		}
		c.held[i] = heldUpload{}
	}
	c.held = c.held[:0]
	return nil
}

// nextReady reports whether the next request can be read without waiting
// for the peer: it is whole in the read buffer, or the rest of it is
// already in the socket. A client pipelining blocks then gets the answers
// to all it sent at once, in one write.
func (c *conn) nextReady() bool {
	missing := c.r.Missing()
	return missing == 0 || missing > 0 && c.inSocket() >= missing
}

// flushAt is how many bytes of responses may wait for the requests
// pipelined behind them.
const flushAt = 32 << 10

// send answers with resp. A response without a binary part waits in the
// write buffer while the next request is already whole in the read buffer
// (a client pipelining requests): its answer then joins the same write, so
// that a window of blocks costs one write, not one per block. A client
// that waits for each answer before sending the next request gets each
// answer at once, in one write (FRAME-6). A response with a binary part is
// written at once, the block by a vectored write without being copied.
// force writes at once in any case.
func (c *conn) send(resp *spec.Message, force bool) bool {
	start := len(c.wbuf)
	var err error
	if ff := c.fromFile; ff.n > 0 {
		c.fromFile.n = 0
		if c.wbuf, err = spec.AppendFrameHeadLen(c.wbuf, resp, ff.n); err != nil {
			c.wbuf = c.wbuf[:start]
			c.log.Error("encode response", "err", err)
			return false
		}
		return c.flushFile(ff.f, ff.off, ff.n)
	}
	c.wbuf, err = spec.AppendFrameHead(c.wbuf, resp)
	if err != nil {
		c.wbuf = c.wbuf[:start]
		c.log.Error("encode response", "err", err)
		return false
	}
	if len(resp.Binary) == 0 && !force && len(c.wbuf) < flushAt && c.nextReady() {
		return true
	}
	return c.flush(resp.Binary)
}

// sendAll answers a run of requests with one write.
func (c *conn) sendAll(resps []*spec.Message) bool {
	for _, resp := range resps {
		start := len(c.wbuf)
		var err error
		if c.wbuf, err = spec.AppendFrame(c.wbuf, resp); err != nil {
			c.wbuf = c.wbuf[:start]
			c.log.Error("encode response", "err", err)
			return false
		}
	}
	return c.flush(nil)
}

// flushFile writes the responses waiting in the write buffer, the last of
// which announces n bytes of binary, and then those bytes from f at off by
// sendfile: the block goes from the page cache to the socket without
// being copied through the server.
func (c *conn) flushFile(f *os.File, off, n int64) bool {
	if !c.flush(nil) {
		return false
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		c.log.Error("seek in file", "err", err)
		return false
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	c.lr = io.LimitedReader{R: f, N: n}
	sent, err := c.nc.(*net.TCPConn).ReadFrom(&c.lr)
	c.lr.R = nil
	c.sent += sent
	c.srv.met.traffic(0, int(sent))
	if err == nil && sent < n {
		err = io.ErrUnexpectedEOF // the file shrank under us
	}
	if err != nil {
		c.log.Warn("write block", "err", err)
		return false
	}
	return true
}

// flush writes the responses waiting in the write buffer, followed by bin.
func (c *conn) flush(bin []byte) bool {
	if len(c.wbuf) == 0 && len(bin) == 0 {
		return true
	}
	if err := c.commit(); err != nil {
		// The answers waiting would acknowledge blocks that are not
		// recorded: they are not sent, and the client sends the blocks
		// again on another connection.
		c.log.Error("storage failure; closing without acknowledging", "err", err)
		c.wbuf = c.wbuf[:0]
		return false
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	var n int64
	var err error
	if _, vectored := c.nc.(*net.TCPConn); vectored && len(bin) > 0 {
		c.vecArr = [2][]byte{c.wbuf, bin}
		c.vec = c.vecArr[:] // WriteTo consumes c.vec
		n, err = c.vec.WriteTo(c.nc)
		c.vecArr = [2][]byte{}
	} else {
		// Anything but a TCP connection writes net.Buffers one buffer
		// at a time: copy, to keep one write per response.
		c.wbuf = append(c.wbuf, bin...)
		var m int
		m, err = c.nc.Write(c.wbuf)
		n = int64(m)
	}
	c.sent += n
	c.srv.met.traffic(0, int(n))
	c.wbuf = c.wbuf[:0]
	if cap(c.wbuf) > 4<<20 {
		c.wbuf = nil // a large block is not kept between requests
	}
	if err != nil {
		c.log.Warn("write response", "err", err)
		return false
	}
	return true
}
