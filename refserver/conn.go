package refserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
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

	r        *spec.Reader
	fl       frameLimiter
	requests int    // requests answered
	sent     int64  // bytes of responses written
	wbuf     []byte // reused frame buffer of the responses
	blk      []byte // reused block buffer of DOWNLOAD

	// The last token verified, so that a token sent with every block is
	// checked once.
	tokenRaw     string
	tokenUser    string
	tokenExpires time.Time

	// runs is set when the storage stores a run of blocks in one write
	// (storage.RunWriter): pipelined UPLOADs of consecutive blocks are
	// then taken together (serveRun). collect gathers their blocks while
	// they are dispatched; pending holds a request (or read error) read
	// ahead that did not belong to the run.
	runs        bool
	br          *bufio.Reader // under r, when runs is set
	collect     *[]uploadItem
	pending     bool
	pendReq     *spec.Message
	pendErr     error
	pendTraffic int

	// The completed file DOWNLOAD read last, kept open between blocks.
	dlMeta *storage.FileMeta
	dlUser string
	dlKey  string
	dlFile storage.File
}

func (s *Server) newConn(nc net.Conn, id uint64) *conn {
	c := &conn{srv: s, nc: nc, id: id}
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
		if c.dlFile != nil {
			c.dlFile.Close()
		}
		c.nc.Close()
		c.releaseFrames()
		s.mu.Lock()
		delete(s.conns, c)
		s.leaveLocked(c.ip)
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
				c.idle.Store(true)
				c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
				if s.inShutdown.Load() {
					return "server shutting down"
				}
			}
			before := c.r.Offset()
			req, err = c.r.ReadMessage()
			s.met.traffic(int(c.r.Offset()-before), 0)
			c.frameDone(c.r.Offset() - before - spec.HeaderLen)
		}
		if err != nil {
			var fe *spec.FrameError
			switch {
			case errors.As(err, &fe) && errors.Is(err, spec.ErrCharCountLength) && fe.Recovered != nil:
				c.log.Warn("frame length counts characters, not bytes; serving the request it meant", "offset", fe.Offset,
					"header_json_len", fe.JSONLen, "json_bytes", fe.ActualJSONLen)
				s.met.frameError("char_count_length")
				req = fe.Recovered
			case errors.As(err, &fe) && fe.Resumable():
				c.log.Warn("malformed frame", "err", err)
				s.met.frameError("malformed")
				if !c.send(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusCompulsory,
					"Malformed frame: "+fe.Err.Error()+".")) {
					return "write failed"
				}
				continue
			case errors.Is(err, spec.ErrJSONTooLarge) || errors.Is(err, spec.ErrBinaryTooLarge):
				c.log.Warn("frame over the limits", "err", err)
				s.met.frameError("too_large")
				c.send(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusTooLarge,
					"Frame too large: "+err.Error()+"."))
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
		if c.runs && startsRun(req) && c.r.FrameBuffered() {
			if !c.serveRun(req) {
				return "write failed"
			}
			continue
		}
		resp, closeAfter := c.handle(req)
		if !c.send(resp) {
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

// send writes resps, one frame each, in a single write.
func (c *conn) send(resps ...*spec.Message) bool {
	c.wbuf = c.wbuf[:0]
	for _, resp := range resps {
		var err error
		c.wbuf, err = spec.AppendFrame(c.wbuf, resp)
		if err != nil {
			c.log.Error("encode response", "err", err)
			return false
		}
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	n, err := c.nc.Write(c.wbuf)
	c.sent += int64(n)
	c.srv.met.traffic(0, n)
	if err != nil {
		c.log.Warn("write response", "err", err)
		return false
	}
	// A large download buffer is not kept between requests.
	if cap(c.wbuf) > 4<<20 {
		c.wbuf = nil
	}
	return true
}
