package stepdump

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Timeline follows each connection's exchanges over time: the bytes the
// exchanges moved, sent and answered (a time-sequence graph, where the gap
// between the two is what is in flight), the bytes carried per
// interval (an I/O graph) and the latency of the answers. Its memory per
// connection is bounded whatever the capture's length: points are thinned
// and intervals widened as a connection goes on.
type Timeline struct {
	conns []*connTimeline
	byID  map[int]*connTimeline
}

// NewTimeline returns an empty timeline.
func NewTimeline() *Timeline { return &Timeline{byID: make(map[int]*connTimeline)} }

// Bounds of the per-connection series.
const (
	maxSeqPoints = 4096 // points of the time-sequence graph
	maxIOBins    = 512  // intervals of the I/O graph
	firstIOBin   = 100 * time.Microsecond
)

// seqPoint is the state after one message: the bytes of the requests sent
// and of the answers received (sent), the bytes of the exchanges answered,
// request and answer (acked), and the requests in flight. An upload's
// blocks count in its requests, a download's in its answers, so both
// climb by the file's bytes; sent minus acked is the requests unanswered.
type seqPoint struct {
	t           time.Duration // since the connection's first message
	sent, acked int64
	inFlight    int
}

type ioBin struct{ up, down int64 }

// msgRef names a message for the stall report.
type msgRef struct {
	t      time.Time
	packet int64
	seq    int
	label  string
}

type connTimeline struct {
	c           *Conn
	first, last time.Time
	sent, acked int64
	inFlight    int

	pts     []seqPoint
	stride  int // keep one point in stride
	skipped int

	bins     []ioBin
	binWidth time.Duration

	lat latencyHist

	blockReqs   int
	inFlightSum int64
	inFlightMax int

	prev               msgRef
	stall              time.Duration
	stallFrom, stallTo msgRef
}

// frameBytes is a frame's length on the wire.
func frameBytes(m *Message) int64 {
	return int64(spec.HeaderLen) + int64(m.JSONLen) + int64(m.BinaryLen)
}

func (tl *Timeline) conn(c *Conn) *connTimeline {
	ct := tl.byID[c.ID]
	if ct == nil {
		ct = &connTimeline{c: c, stride: 1, binWidth: firstIOBin}
		tl.byID[c.ID] = ct
		tl.conns = append(tl.conns, ct)
	}
	return ct
}

// Message adds a message to its connection's series.
func (tl *Timeline) Message(m *Message) {
	if m.Conn == nil {
		return
	}
	ct := tl.conn(m.Conn)
	if ct.first.IsZero() {
		ct.first = m.Time
		ct.prev = msgRef{t: m.Time}
	}
	if m.Time.After(ct.last) {
		ct.last = m.Time
	}
	n := frameBytes(m)
	if m.FromClient {
		ct.sent += n
		ct.inFlight++
		if isBlockRequest(m) {
			ct.blockReqs++
			ct.inFlightSum += int64(ct.inFlight)
			ct.inFlightMax = max(ct.inFlightMax, ct.inFlight)
		}
	} else if m.Request != nil {
		ct.sent += n
		ct.acked += frameBytes(m.Request) + n
		ct.inFlight = max(ct.inFlight-1, 0)
		ct.lat.add(m.Latency)
	}
	ct.addBytes(m.Time, n, m.FromClient)
	ref := msgRef{t: m.Time, packet: m.Packet, seq: m.Seq, label: shortLabel(m)}
	if gap := m.Time.Sub(ct.prev.t); gap > ct.stall && ct.prev.seq > 0 {
		ct.stall, ct.stallFrom, ct.stallTo = gap, ct.prev, ref
	}
	ct.prev = ref
	ct.addPoint(seqPoint{t: m.Time.Sub(ct.first), sent: ct.sent, acked: ct.acked, inFlight: ct.inFlight})
}

// Note is ignored.
func (tl *Timeline) Note(*Note) {}

// ConnEnd is ignored: series are read at the end.
func (tl *Timeline) ConnEnd(*Conn) {}

func isBlockRequest(m *Message) bool {
	if m.Msg == nil {
		return false
	}
	if op := m.Msg.Operation(); op != spec.OpUpload && op != spec.OpDownload {
		return false
	}
	_, err := m.Msg.BlockIndex()
	return err == nil
}

func shortLabel(m *Message) string {
	s := fmt.Sprintf("#%d %s %s", m.Seq, m.Operation(), m.Type())
	if m.Msg != nil {
		if bi, err := m.Msg.BlockIndex(); err == nil {
			s += fmt.Sprintf(" block %d", bi)
		}
		if st, ok := m.Msg.Status(); ok {
			s += fmt.Sprintf(" %d", st)
		}
	}
	return s
}

// addPoint keeps the point, thinning the series by half when it is full:
// the curves only rise, so fewer points draw the same staircase coarser.
func (ct *connTimeline) addPoint(p seqPoint) {
	ct.skipped++
	if ct.skipped < ct.stride && len(ct.pts) > 0 {
		// The last point always reflects the latest state.
		ct.pts[len(ct.pts)-1] = p
		return
	}
	ct.skipped = 0
	if len(ct.pts) >= maxSeqPoints {
		kept := ct.pts[:0]
		for i := 0; i < len(ct.pts); i += 2 {
			kept = append(kept, ct.pts[i])
		}
		ct.pts = kept
		ct.stride *= 2
	}
	ct.pts = append(ct.pts, p)
}

// addBytes counts n bytes at t, merging intervals pairwise when there are
// too many.
func (ct *connTimeline) addBytes(t time.Time, n int64, up bool) {
	i := int(t.Sub(ct.first) / ct.binWidth)
	for i >= maxIOBins {
		merged := ct.bins[:0]
		for j := 0; j < len(ct.bins); j += 2 {
			b := ct.bins[j]
			if j+1 < len(ct.bins) {
				b.up += ct.bins[j+1].up
				b.down += ct.bins[j+1].down
			}
			merged = append(merged, b)
		}
		ct.bins = merged
		ct.binWidth *= 2
		i = int(t.Sub(ct.first) / ct.binWidth)
	}
	for len(ct.bins) <= i {
		ct.bins = append(ct.bins, ioBin{})
	}
	if up {
		ct.bins[i].up += n
	} else {
		ct.bins[i].down += n
	}
}

// latencyHist counts latencies in buckets 1% apart, from 1µs to 1000s: the
// percentiles it gives are within 0.5% of the exact ones.
type latencyHist struct {
	counts   map[int]int64
	n        int64
	min, max time.Duration
}

const latencyGrowth = 1.01

func latencyBucket(d time.Duration) int {
	if d < time.Microsecond {
		return 0
	}
	return int(math.Log(float64(d)/float64(time.Microsecond)) / math.Log(latencyGrowth))
}

func latencyOf(bucket int) time.Duration {
	// The bucket's geometric middle.
	return time.Duration(float64(time.Microsecond) * math.Pow(latencyGrowth, float64(bucket)+0.5))
}

func (h *latencyHist) add(d time.Duration) {
	if h.counts == nil {
		h.counts = make(map[int]int64)
	}
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.counts[latencyBucket(d)]++
	h.n++
}

func (h *latencyHist) buckets() []int {
	bs := make([]int, 0, len(h.counts))
	for b := range h.counts {
		bs = append(bs, b)
	}
	sort.Ints(bs)
	return bs
}

// percentile returns the latency below which p (0..1) of them are.
func (h *latencyHist) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(p * float64(h.n)))
	var seen int64
	for _, b := range h.buckets() {
		seen += h.counts[b]
		if seen >= rank {
			return min(max(latencyOf(b), h.min), h.max)
		}
	}
	return h.max
}

// TimeStats are the numbers behind a connection's graphs.
type TimeStats struct {
	Conn *Conn `json:"-"`
	// BlockRequests counts UPLOAD and DOWNLOAD block requests; InFlight
	// is the number of requests unanswered when each was sent, itself
	// included: 1 for a stop-and-wait client.
	BlockRequests int     `json:"block_requests"`
	InFlightMean  float64 `json:"in_flight_mean"`
	InFlightMax   int     `json:"in_flight_max"`
	// Latencies of the answers.
	Answers                   int64         `json:"answers"`
	P50, P90, P99, MaxLatency time.Duration `json:"-"`
	// Rate is the bytes of the exchanges answered (each request with its
	// answer) per second, from the first message to the last.
	Rate     float64       `json:"rate_bytes_per_s"`
	Duration time.Duration `json:"-"`
	// Stall is the longest time the connection carried no message, from
	// the message before it to the one after.
	Stall              time.Duration `json:"-"`
	StallFrom, StallTo StallEnd      `json:"-"`
}

// StallEnd is a message at one end of a stall.
type StallEnd struct {
	Time   time.Time
	Packet int64
	Label  string
}

// Stats returns the numbers of every connection, in order.
func (tl *Timeline) Stats() []TimeStats {
	var out []TimeStats
	for _, ct := range tl.sorted() {
		out = append(out, ct.stats())
	}
	return out
}

func (tl *Timeline) sorted() []*connTimeline {
	cs := append([]*connTimeline(nil), tl.conns...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].c.ID < cs[j].c.ID })
	return cs
}

func (ct *connTimeline) stats() TimeStats {
	s := TimeStats{Conn: ct.c, BlockRequests: ct.blockReqs, InFlightMax: ct.inFlightMax, Answers: ct.lat.n,
		P50: ct.lat.percentile(0.50), P90: ct.lat.percentile(0.90), P99: ct.lat.percentile(0.99), MaxLatency: ct.lat.max,
		Duration: ct.last.Sub(ct.first), Stall: ct.stall,
		StallFrom: StallEnd{ct.stallFrom.t, ct.stallFrom.packet, ct.stallFrom.label},
		StallTo:   StallEnd{ct.stallTo.t, ct.stallTo.packet, ct.stallTo.label}}
	if ct.blockReqs > 0 {
		s.InFlightMean = float64(ct.inFlightSum) / float64(ct.blockReqs)
	}
	if s.Duration > 0 {
		s.Rate = float64(ct.acked) / s.Duration.Seconds()
	}
	return s
}
