package refserver

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"time"
)

// Fair sharing of the connection limit (STEP.md Appendix B). Below
// Config.MaxConns every address is served alike, however many connections
// it holds: a class behind one NAT address is one address. At the limit, a
// new connection is refused with 503 if its address would then hold as
// many connections as the address holding the most; otherwise it takes the
// place of the least productive connection of an address holding more,
// which is answered 503 and closed. Only a connection that has waited for
// its next request for evictAfter, or that has received its current frame
// for evictAfter at less than slowFrameRate on average, may be closed so: a
// client whose request is being served or whose frame arrives at a usable
// rate never is.
const (
	// evictAfter is how long a connection must have been idle, or
	// receiving one frame, before it may be closed for another address.
	evictAfter = time.Second
	// slowFrameRate is the average rate under which a frame counts as
	// slow: at it, a 20 KiB block of the course's plans takes 20 s, two
	// thirds of the default read timeout.
	slowFrameRate = 1 << 10
)

// admitLocked counts a new connection from ip against the caps. It returns
// the refusal to send instead, or, at the server's limit, the connection
// that must give its place (already uncounted). Called with s.mu held.
func (s *Server) admitLocked(ip string) (victim *conn, refusal string) {
	mine := len(s.byIP[ip])
	if s.cfg.MaxConnsPerIP > 0 && mine >= s.cfg.MaxConnsPerIP {
		return nil, fmt.Sprintf("Server busy: %d connections open from your address, try again later.", s.cfg.MaxConnsPerIP)
	}
	if s.cfg.MaxConns > 0 && s.open.Load() >= int64(s.cfg.MaxConns) {
		if victim = s.victimLocked(mine, time.Now()); victim == nil {
			return nil, fmt.Sprintf("Server busy: %d connections open, try again later.", s.cfg.MaxConns)
		}
		s.uncountLocked(victim)
	}
	return victim, ""
}

// victimLocked chooses the connection that gives its place to a new one
// from an address holding mine connections: the least productive of the
// address holding the most, if that address would still hold more than
// the new one's, else of the next, and so on. Nil: none may be closed.
func (s *Server) victimLocked(mine int, now time.Time) *conn {
	var bigger []string
	for ip, cs := range s.byIP {
		if len(cs) > mine+1 {
			bigger = append(bigger, ip)
		}
	}
	slices.SortFunc(bigger, func(a, b string) int { return cmp.Compare(len(s.byIP[b]), len(s.byIP[a])) })
	for _, ip := range bigger {
		var best *conn
		var bestRank rank
		for c := range s.byIP[ip] {
			if r, ok := c.unproductive(now); ok && (best == nil || r.before(bestRank)) {
				best, bestRank = c, r
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// rank orders the connections that may be closed: slow frames first,
// slowest first, then idle connections, longest idle first.
type rank struct {
	idle    bool
	rate    float64       // bytes per second of a slow frame
	idleFor time.Duration // how long it has been idle
}

func (r rank) before(o rank) bool {
	if r.idle != o.idle {
		return !r.idle
	}
	if !r.idle {
		return r.rate < o.rate
	}
	return r.idleFor > o.idleFor
}

// unproductive reports whether c may be closed to make room for another
// address, and how it ranks. It reads what c's goroutine publishes.
func (c *conn) unproductive(now time.Time) (rank, bool) {
	if c.memWait.Load() {
		return rank{}, false // held back by the server, not by its peer
	}
	if c.idle.Load() {
		d := now.Sub(time.Unix(0, c.idleSince.Load()))
		return rank{idle: true, idleFor: d}, d >= evictAfter
	}
	since := c.frameSince.Load()
	if since == 0 {
		return rank{}, false // its request is being served
	}
	d := now.Sub(time.Unix(0, since))
	if d < evictAfter {
		return rank{}, false
	}
	rate := float64(c.frameGot.Load()) / d.Seconds()
	return rank{rate: rate}, rate < slowFrameRate
}

// uncountLocked takes c out of the counts: its place is given to another
// connection while it closes.
func (s *Server) uncountLocked(c *conn) {
	if c.uncounted {
		return
	}
	c.uncounted = true
	s.open.Add(-1)
	if cs := s.byIP[c.ip]; cs != nil {
		delete(cs, c)
		if len(cs) == 0 {
			delete(s.byIP, c.ip)
		}
	}
}

// evict makes c answer 503 and close (see conn.evicted): its read in
// progress, if any, ends now.
func (c *conn) evict() {
	c.evicted.Store(true)
	c.nc.SetReadDeadline(time.Now())
}

// ServeConn serves one connection accepted elsewhere (or one end of a
// net.Pipe) and returns when it ends. The connection caps apply to it as
// to those Serve accepts.
func (s *Server) ServeConn(nc net.Conn) {
	if c := s.track(nc, s.nextID.Add(1)); c != nil {
		c.serve()
	}
}

// track admits nc and registers it as served, or refuses it (or closes it
// when the server is shutting down) and returns nil.
func (s *Server) track(nc net.Conn, id uint64) *conn {
	ip := remoteIP(nc)
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	victim, refusal := s.admitLocked(ip)
	holding := 0
	if victim != nil {
		holding = len(s.byIP[victim.ip]) + 1
	}
	if refusal != "" {
		s.mu.Unlock()
		s.met.connRefused()
		go s.refuse(nc, id, refusal)
		return nil
	}
	// Made under the lock: once shutting down, finish closes the
	// storage the connection looks at.
	c := s.newConn(nc, id)
	c.ip = ip
	s.open.Add(1)
	cs := s.byIP[ip]
	if cs == nil {
		cs = make(map[*conn]struct{})
		s.byIP[ip] = cs
	}
	cs[c] = struct{}{}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	if victim != nil {
		s.met.connEvicted()
		victim.log.Warn("connection closed to make room for another address", "remote", victim.nc.RemoteAddr().String(),
			"for", nc.RemoteAddr().String(), "address_conns", holding)
		victim.evict()
	}
	return c
}
