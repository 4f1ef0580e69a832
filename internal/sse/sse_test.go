package sse

import (
	"net/http/httptest"
	"testing"
)

func TestEvents(t *testing.T) {
	rec := httptest.NewRecorder()
	s, err := Start(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Event("", map[string]string{"a": "é"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Raw("image_generation.completed", []byte(`{"b":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	want := "data: {\"a\":\"\\u00e9\"}\n\nevent: image_generation.completed\ndata: {\"b\":1}\n\n: keep-alive\n\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("stream\n%q\nwant\n%q", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" || !rec.Flushed {
		t.Errorf("content type %q, flushed %v", ct, rec.Flushed)
	}
}
