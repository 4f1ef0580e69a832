package api

import (
	"net/http"
	"time"

	"github.com/kleinserve/kleinserve/internal/sse"

	"github.com/google/uuid"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// handleRun: POST /{endpoint id}, the synchronous run. The request waits in
// the same queue as everything else; if the client goes away the job is
// canceled.
func (s *Server) handleRun(ep wire.Endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.run(w, r, ep) }
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, ep wire.Endpoint) {
	sub, err := s.decodeSubmission(w, r, ep)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := uuid.NewString()
	w.Header().Set(headerRequestID, id)
	if _, err := s.enqueue(r.Context(), id, sub, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	job, err := s.waitCompleted(r.Context(), id)
	if err != nil {
		if r.Context().Err() == nil {
			s.writeError(w, r, err)
		}
		return
	}
	s.writeOutcome(w, job)
}

// handleStream: POST /{endpoint id}/stream. Errors before the job is queued
// are ordinary JSON errors; after that the answer is an SSE
// stream of progress events (with JPEG previews every PreviewEvery steps),
// published by the worker that runs the job, whose last event is the exact
// output, or {"error":…} on failure.
func (s *Server) handleStream(ep wire.Endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.stream(w, r, ep) }
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, ep wire.Endpoint) {
	sub, err := s.decodeSubmission(w, r, ep)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sub.payload.PreviewEvery = s.opts.PreviewEvery
	id := uuid.NewString()
	w.Header().Set(headerRequestID, id)
	progress, unsubscribe, err := s.opts.Events.Subscribe(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer unsubscribe()
	if _, err := s.enqueue(r.Context(), id, sub, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(headerRequestID, id)
	stream, err := sse.Start(w)
	if err != nil {
		s.cancelAbandoned(id)
		return
	}
	keepAlive := time.NewTicker(s.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		changed := s.queue.Changed()
		job, err := s.queue.Read(r.Context(), id, 0)
		if err != nil {
			if r.Context().Err() != nil {
				s.cancelAbandoned(id)
				return
			}
			e := classify(err)
			_ = stream.Event("", wire.StreamError{Error: e.message, ErrorType: e.typ})
			return
		}
		if job.Status == queue.StatusCompleted {
			s.drainProgress(stream, progress)
			if job, err = s.queue.Read(r.Context(), id, queue.PartResult); err != nil {
				e := classify(err)
				_ = stream.Event("", wire.StreamError{Error: e.message, ErrorType: e.typ})
				return
			}
			if f := job.Failure; f != nil {
				_ = stream.Event("", wire.StreamError{Error: f.Message, ErrorType: f.Type, Detail: jsonDetail(f.Body)})
				return
			}
			_ = stream.Raw("", job.Result)
			return
		}
		select {
		case ev, ok := <-progress:
			if !ok { // the job ended; its outcome is read next
				progress = nil
				continue
			}
			if err := stream.Raw("", ev); err != nil {
				s.cancelAbandoned(id)
				return
			}
		case <-changed:
		case <-keepAlive.C:
			if err := stream.KeepAlive(); err != nil {
				s.cancelAbandoned(id)
				return
			}
		case <-r.Context().Done():
			s.cancelAbandoned(id)
			return
		}
	}
}

// drainWait bounds how long a finished job's last progress events may take
// to arrive from the worker that published them (another process's events
// travel through the shared queue).
const drainWait = 2 * time.Second

// drainProgress sends the progress events still on their way when the job
// ended, until the queue closes the subscription after the job's last
// event, so the final output is always the last event.
func (s *Server) drainProgress(stream *sse.Writer, progress <-chan []byte) {
	if progress == nil {
		return
	}
	timeout := time.NewTimer(drainWait)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-progress:
			if !ok || stream.Raw("", ev) != nil {
				return
			}
		case <-timeout.C:
			return
		}
	}
}
