// Package sse writes Server-Sent Events the way fal's and OpenAI's clients
// parse them: "data: <JSON>" events, optionally named by an "event:" line,
// and ": keep-alive" comments; never id: or retry: fields, never an event
// without data, and every JSON document pure ASCII so that a chunk boundary
// cannot split a character (docs/fal-protocol.md §6, docs/openai.md).
//
// Write deadlines are the server's: its middleware sets one before every
// write (internal/api's paceWriter), so a stuck client cannot pin a handler.
package sse

import (
	"fmt"
	"net/http"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// Writer writes the events of one response.
type Writer struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// Start sends the stream's headers, with any the caller set on w before,
// and flushes them.
func Start(w http.ResponseWriter) (*Writer, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // disable proxy buffering (nginx)
	w.WriteHeader(http.StatusOK)
	s := &Writer{w: w, rc: http.NewResponseController(w)}
	return s, s.flush()
}

func (s *Writer) flush() error {
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("sse flush: %w", err)
	}
	return nil
}

// Event writes one event holding v as ASCII JSON; name, when not empty,
// is its "event:" line.
func (s *Writer) Event(name string, v any) error {
	raw, err := wire.MarshalASCII(v)
	if err != nil {
		return err
	}
	return s.Raw(name, raw)
}

// Raw writes one event of already-encoded JSON (made ASCII here). JSON
// from encoding/json never contains a raw newline, so one data line always
// suffices.
func (s *Writer) Raw(name string, raw []byte) error {
	raw = wire.EscapeNonASCII(raw)
	buf := make([]byte, 0, len(name)+len(raw)+16)
	if name != "" {
		buf = append(buf, "event: "...)
		buf = append(buf, name...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, raw...)
	buf = append(buf, '\n', '\n')
	return s.write(buf)
}

// KeepAlive writes a comment line, which every parser ignores.
func (s *Writer) KeepAlive() error { return s.write([]byte(": keep-alive\n\n")) }

func (s *Writer) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("sse write: %w", err)
	}
	return s.flush()
}
