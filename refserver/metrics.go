package refserver

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stepkit/stepkit/spec"
)

// Metrics are the Prometheus metrics of a server. Create them with
// NewMetrics and pass them in Config.Metrics; several servers may share
// one set.
type Metrics struct {
	connections   prometheus.Counter
	active        prometheus.Gauge
	refused       prometheus.Counter
	evicted       prometheus.Counter
	requests      *prometheus.CounterVec
	bytesIn       prometheus.Counter
	bytesOut      prometheus.Counter
	uploads       prometheus.Counter
	frameErrors   *prometheus.CounterVec
	knownRequests map[[2]string]prometheus.Counter
}

// NewMetrics creates the server metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "connections_total", Help: "Connections accepted."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "step", Name: "connections_active", Help: "Connections open now."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "connections_refused_total", Help: "Connections refused with 503 at the connection cap."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "connections_evicted_total",
			Help: "Connections closed with 503 at the connection cap to make room for another address."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "step", Name: "requests_total", Help: "Requests answered, by operation and status."},
			[]string{"operation", "status"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "received_bytes_total", Help: "Frame bytes received."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "sent_bytes_total", Help: "Frame bytes sent."}),
		uploads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "step", Name: "uploads_completed_total", Help: "Files completed by their last block."}),
		frameErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "step", Name: "frame_errors_total", Help: "Frames that could not be read, by error."},
			[]string{"error"}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.active, m.refused, m.evicted, m.requests,
		m.bytesIn, m.bytesOut, m.uploads, m.frameErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The common label pairs are resolved once, so that counting a
	// request on the hot path takes no lock.
	m.knownRequests = make(map[[2]string]prometheus.Counter)
	ops := append(spec.RequestOperations(), spec.OpError, spec.Op3Body)
	statuses := []spec.Status{200, 333, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 413, 429, 500, 503, 507}
	for _, op := range ops {
		for _, st := range statuses {
			k := [2]string{string(op), strconv.Itoa(int(st))}
			m.knownRequests[k] = m.requests.WithLabelValues(k[0], k[1])
		}
	}
	return m, nil
}

func (m *Metrics) request(op string, st spec.Status) {
	if m == nil {
		return
	}
	k := [2]string{op, strconv.Itoa(int(st))}
	if c, ok := m.knownRequests[k]; ok {
		c.Inc()
		return
	}
	if !spec.Operation(op).Valid() {
		k[0] = "other"
	}
	m.requests.WithLabelValues(k[0], k[1]).Inc()
}

func (m *Metrics) frameError(kind string) {
	if m != nil {
		m.frameErrors.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.connections.Inc()
		m.active.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.active.Dec()
	}
}

func (m *Metrics) connRefused() {
	if m != nil {
		m.refused.Inc()
	}
}

func (m *Metrics) connEvicted() {
	if m != nil {
		m.evicted.Inc()
	}
}

func (m *Metrics) traffic(in, out int) {
	if m != nil {
		if in > 0 {
			m.bytesIn.Add(float64(in))
		}
		if out > 0 {
			m.bytesOut.Add(float64(out))
		}
	}
}

func (m *Metrics) uploadDone() {
	if m != nil {
		m.uploads.Inc()
	}
}
