package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"time"

	"github.com/kleinserve/kleinserve/internal/sse"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// handleSubmit: POST /queue/{endpoint id}. The answer is sent only after
// the job is durably committed.
func (s *Server) handleSubmit(ep wire.Endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.submit(w, r, ep) }
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, ep wire.Endpoint) {
	sub, err := s.decodeSubmission(w, r, ep)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := uuid.NewString()
	job, err := s.enqueue(r.Context(), id, sub, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(headerRequestID, id)
	writeJSON(w, s.log, http.StatusOK, wire.SubmitResponse{
		Status:           wire.StatusInQueue,
		RequestID:        id,
		GatewayRequestID: id,
		RequestURLs:      s.requestURLs(id),
		QueuePosition:    job.Position,
	})
}

// statusBody renders a job as fal's status body. With logs, it lists the
// log lines from index fromLog on (0 for polls: cumulative; the status
// stream passes what it already sent, so events carry only new lines).
func (s *Server) statusBody(job *queue.Job, logs bool, fromLog int) wire.Status {
	st := wire.Status{
		Status:      string(job.Status),
		RequestID:   job.ID,
		RequestURLs: s.requestURLs(job.ID),
	}
	if job.Status == queue.StatusQueued {
		pos := job.Position
		st.QueuePosition = &pos
	}
	if logs {
		st.Logs = make([]wire.LogEntry, 0, max(len(job.Logs)-fromLog, 0))
		for _, l := range job.Logs[min(fromLog, len(job.Logs)):] {
			st.Logs = append(st.Logs, wire.NewLogEntry(l.Time, l.Level, l.Message))
		}
	}
	if job.Status == queue.StatusCompleted {
		if !job.StartedAt.IsZero() && !job.FinishedAt.IsZero() {
			t := job.FinishedAt.Sub(job.StartedAt).Seconds()
			st.Metrics.InferenceTime = &t
		}
		if job.Failure != nil {
			st.Error, st.ErrorType = job.Failure.Message, job.Failure.Type
		}
	}
	return st
}

// handleStatus: GET …/requests/{id}/status?logs=1|true. 202 while pending,
// 200 once completed.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "requestID")
	withLogs := truthy(r.URL.Query().Get("logs"))
	job, err := s.readOwned(r.Context(), id, logParts(withLogs))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusAccepted
	if job.Status == queue.StatusCompleted {
		code = http.StatusOK
	}
	w.Header().Set(headerRequestID, id)
	writeJSON(w, s.log, code, s.statusBody(job, withLogs, 0))
}

// handleStatusStream: GET …/requests/{id}/status/stream. One event at
// connect and one per change; the stream closes right after COMPLETED,
// because the JS client resolves with the last event when it closes.
func (s *Server) handleStatusStream(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "requestID")
	withLogs := truthy(r.URL.Query().Get("logs"))
	changed := s.queue.Changed()
	job, err := s.readOwned(r.Context(), id, logParts(withLogs))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(headerRequestID, id)
	stream, err := sse.Start(w)
	if err != nil {
		return
	}
	keepAlive := time.NewTicker(s.opts.KeepAlive)
	defer keepAlive.Stop()
	sentLogs := 0
	var last *wire.Status
	for {
		body := s.statusBody(job, withLogs, sentLogs)
		// Send on any change of state, position or new log lines.
		if last == nil || len(body.Logs) > 0 || !sameStatus(*last, body) {
			if err := stream.Event("", body); err != nil {
				return
			}
			sentLogs = max(sentLogs, len(job.Logs))
			last = &body
		}
		if job.Status == queue.StatusCompleted {
			return
		}
		select {
		case <-changed:
		case <-keepAlive.C:
			if err := stream.KeepAlive(); err != nil {
				return
			}
			continue
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		}
		changed = s.queue.Changed()
		job, err = s.readOwned(r.Context(), id, logParts(withLogs))
		if err != nil {
			// Expired or unreadable mid-stream: report it as the last event.
			_ = stream.Event("", wire.StreamError{Error: classify(err).message, ErrorType: classify(err).typ})
			return
		}
	}
}

// sameStatus compares two status bodies ignoring their log lines.
func sameStatus(a, b wire.Status) bool {
	a.Logs, b.Logs = nil, nil
	return reflect.DeepEqual(a, b)
}

// handleResult: GET …/requests/{id}. The stored output with 200, or the
// stored failure with its own status and body.
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "requestID")
	job, err := s.readOwned(r.Context(), id, queue.PartResult)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(headerRequestID, id)
	if job.Status != queue.StatusCompleted {
		s.writeError(w, r, errInProgress)
		return
	}
	s.writeOutcome(w, job)
}

// writeOutcome answers with a completed job's result or failure.
func (s *Server) writeOutcome(w http.ResponseWriter, job *queue.Job) {
	if f := job.Failure; f != nil {
		for k, v := range f.Headers {
			w.Header().Set(k, v)
		}
		writeRawJSON(w, f.HTTPStatus, f.Body)
		return
	}
	writeRawJSON(w, http.StatusOK, job.Result)
}

// handleCancel: PUT …/requests/{id}/cancel. 202 CANCELLATION_REQUESTED,
// 400 ALREADY_COMPLETED or 404 NOT_FOUND.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "requestID")
	if _, err := s.readOwned(r.Context(), id, 0); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.queue.Cancel(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(headerRequestID, id)
	writeJSON(w, s.log, http.StatusAccepted, wire.CancelResponse{Status: wire.CancelRequested})
}

// waitCompleted blocks until the job completes or ctx ends (the client
// left: the job is canceled). It returns the completed job.
func (s *Server) waitCompleted(ctx context.Context, id string) (*queue.Job, error) {
	for {
		changed := s.queue.Changed()
		job, err := s.queue.Read(context.WithoutCancel(ctx), id, 0)
		if err != nil {
			return nil, err
		}
		if job.Status == queue.StatusCompleted {
			return s.queue.Read(context.WithoutCancel(ctx), id, queue.PartResult)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			s.cancelAbandoned(id)
			return nil, ctx.Err()
		}
	}
}

// cancelAbandoned cancels a job whose client disconnected.
func (s *Server) cancelAbandoned(id string) {
	err := s.queue.Cancel(context.Background(), id)
	if err != nil && !errors.Is(err, queue.ErrAlreadyCompleted) && !errors.Is(err, queue.ErrNotFound) {
		s.log.Error().Err(err).Str("request_id", id).Msg("cancel abandoned request")
		return
	}
	s.log.Info().Str("request_id", id).Msg("client disconnected; request cancelled")
}

// jsonDetail extracts the "detail" of a stored error body for stream events.
func jsonDetail(body json.RawMessage) any {
	var v struct {
		Detail any `json:"detail"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	return v.Detail
}

// logParts is what a status read loads: the log lines only when asked for,
// never the result.
func logParts(withLogs bool) queue.Part {
	if withLogs {
		return queue.PartLogs
	}
	return 0
}
