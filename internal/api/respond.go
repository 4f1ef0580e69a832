package api

import (
	"encoding/json"
	"net/http"

	"github.com/rs/zerolog"
)

const (
	headerRequestID = "X-Fal-Request-Id"
	contentTypeJSON = "application/json"
)

// writeJSON is the one JSON response writer: it sets the content type,
// encodes v and writes the status. An encoding failure (a bug) becomes a 500.
func writeJSON(w http.ResponseWriter, log zerolog.Logger, status int, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		log.Error().Err(err).Msg("encode response")
		status = http.StatusInternalServerError
		raw = []byte(`{"detail":"Internal server error","error_type":"internal_server_error"}`)
	}
	writeRawJSON(w, status, raw)
}

// writeRawJSON writes already-encoded JSON (stored results and failures).
func writeRawJSON(w http.ResponseWriter, status int, raw []byte) {
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// writeError answers err through classify.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	for k, v := range e.header {
		w.Header().Set(k, v)
	}
	if e.status >= 500 {
		s.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Int("status", e.status).
			Str("request_id", w.Header().Get(headerRequestID)).Msg("request failed")
	}
	writeJSON(w, s.log, e.status, e.body)
}
