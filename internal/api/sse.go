package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// sseWriter writes Server-Sent Events the way both fal clients parse them
// (docs/fal-protocol.md §6): only "data: <JSON>" events and ": comment" keep-alives,
// never id: or retry: fields, never an event without data, and every JSON
// document pure ASCII so a chunk boundary cannot split a character.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE sends the stream's headers and flushes them.
func startSSE(w http.ResponseWriter, requestID string) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", contentTypeStream)
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // disable proxy buffering (nginx)
	if requestID != "" {
		h.Set(headerRequestID, requestID)
	}
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	return s, s.flush()
}

func (s *sseWriter) flush() error {
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("sse flush: %w", err)
	}
	return nil
}

// event writes one data event holding v as ASCII JSON.
func (s *sseWriter) event(v any) error {
	raw, err := wire.MarshalASCII(v)
	if err != nil {
		return err
	}
	return s.rawEvent(raw)
}

// rawEvent writes one data event of already-encoded JSON (made ASCII here).
// JSON from encoding/json never contains a raw newline, so one data line
// always suffices.
func (s *sseWriter) rawEvent(raw []byte) error {
	raw = wire.EscapeNonASCII(raw)
	// A write deadline per event: a stuck client must not pin the handler.
	_ = s.rc.SetWriteDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 0, len(raw)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, raw...)
	buf = append(buf, '\n', '\n')
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("sse write: %w", err)
	}
	return s.flush()
}

// keepAlive writes a comment line, which every parser ignores.
func (s *sseWriter) keepAlive() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return fmt.Errorf("sse write: %w", err)
	}
	return s.flush()
}
