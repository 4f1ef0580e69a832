package api

import (
	"io"
	"net/http"
	"time"
)

// Pace holds the deadlines of reading a request body and writing a
// response. They move with progress instead of bounding a whole request,
// because an upload of hundreds of MB and an event stream that lasts
// minutes are legitimate, while a client that stalls, or trickles a body
// byte by byte to hold a connection, is not. Zero fields take the defaults
// of DefaultPace.
type Pace struct {
	// BodyGrace plus one second per BodyMinRate bytes received is how long
	// a body may take so far: a client that sends at least BodyMinRate
	// bytes/s is never cut off.
	BodyGrace   time.Duration
	BodyMinRate int64
	// BodyIdle bounds the wait for the next bytes of a body.
	BodyIdle time.Duration
	// WriteIdle bounds each write of a response to a client that does not
	// read.
	WriteIdle time.Duration
	// DrainGrace bounds how long the server may read the rest of a body
	// the handler did not consume (it does so to reuse the connection).
	DrainGrace time.Duration
}

// DefaultPace is the pace of production servers.
func DefaultPace() Pace {
	return Pace{BodyGrace: 10 * time.Second, BodyMinRate: 16 << 10, BodyIdle: 10 * time.Second,
		WriteIdle: time.Minute, DrainGrace: time.Second}
}

func (p Pace) withDefaults() Pace {
	d := DefaultPace()
	if p.BodyGrace <= 0 {
		p.BodyGrace = d.BodyGrace
	}
	if p.BodyMinRate <= 0 {
		p.BodyMinRate = d.BodyMinRate
	}
	if p.BodyIdle <= 0 {
		p.BodyIdle = d.BodyIdle
	}
	if p.WriteIdle <= 0 {
		p.WriteIdle = d.WriteIdle
	}
	if p.DrainGrace <= 0 {
		p.DrainGrace = d.DrainGrace
	}
	return p
}

// deadlines applies the body-read and response-write deadlines.
func (s *Server) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var body *paceReader
		if r.Body != nil && r.Body != http.NoBody {
			body = &paceReader{ReadCloser: r.Body, rc: rc, start: time.Now(), pace: s.opts.Pace}
			r.Body = body
		}
		next.ServeHTTP(&paceWriter{ResponseWriter: w, rc: rc, idle: s.opts.Pace.WriteIdle}, r)
		if body != nil && !body.done {
			// The server drains an unread body after the handler; a client
			// trickling it must not hold the connection meanwhile.
			_ = rc.SetReadDeadline(time.Now().Add(s.opts.Pace.DrainGrace))
		}
	})
}

// paceReader sets the connection's read deadline before every read, and
// clears it once the body has ended: the server then reads the connection
// in the background to notice a client that goes away, which must not
// time out while a long generation runs.
type paceReader struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	pace  Pace
	n     int64
	done  bool
}

func (p *paceReader) Read(b []byte) (int, error) {
	deadline := time.Now().Add(p.pace.BodyIdle)
	earned := time.Duration(float64(p.n) / float64(p.pace.BodyMinRate) * float64(time.Second))
	if budget := p.start.Add(p.pace.BodyGrace + earned); budget.Before(deadline) {
		deadline = budget
	}
	_ = p.rc.SetReadDeadline(deadline)
	n, err := p.ReadCloser.Read(b)
	p.n += int64(n)
	if err == io.EOF {
		p.done = true
		_ = p.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// paceWriter sets the connection's write deadline before every write,
// each event of a stream included (internal/sse relies on it).
type paceWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (p *paceWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.idle))
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush,
// deadlines) through the wrapper.
func (p *paceWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
