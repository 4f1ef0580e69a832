package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// recoverer turns a handler panic (a bug) into a logged JSON 500 instead of
// a dropped connection.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).
					Str("path", r.URL.Path).Msg("handler panic")
				s.writeError(w, r, fmt.Errorf("handler panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// observe records metrics by route pattern and logs each request.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		elapsed := time.Since(start)
		s.metrics.ObserveHTTP(route, r.Method, code, elapsed)
		// Status polls arrive ~10/s per Python client: debug level only.
		ev := s.log.Debug()
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			ev = s.log.Info()
		}
		ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", code).
			Dur("duration", elapsed).Msg("http request")
	})
}

// cors allows browser use (docs/fal-protocol.md §10): any origin, the headers fal
// clients send, and x-fal-request-id exposed. Preflights end here, before
// authentication (browsers send no credentials on them).
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		origin := r.Header.Get("Origin")
		if origin != "" {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers",
				"X-Fal-Request-Id, X-Fal-Request-Timeout-Type, X-Fal-Error-Type, Retry-After")
		} else {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
			allow := "Authorization, Content-Type, Accept, X-Fal-Queue-Priority, X-Fal-Request-Timeout, " +
				"X-Fal-Runner-Hint, X-Fal-Object-Lifecycle-Preference, X-Fal-Object-Lifecycle, X-Fal-No-Retry, X-Fal-Target-Url"
			// Echo what the browser asks for, so every x-fal-* header passes.
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				allow = req
			}
			h.Set("Access-Control-Allow-Headers", allow)
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// auth requires "Authorization: Key <key>" (or Bearer) when keys are
// configured. Keys are compared in constant time.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.keys) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if key := strings.TrimSpace(cred); ok && (strings.EqualFold(scheme, "Key") || strings.EqualFold(scheme, "Bearer")) && s.validKey(key) {
			next.ServeHTTP(w, withOwner(r, key))
			return
		}
		s.writeError(w, r, errUnauthorized)
	})
}

// validKey reports whether key is one of the configured keys (any key when
// none are configured), comparing in constant time.
func (s *Server) validKey(key string) bool {
	if len(s.keys) == 0 {
		return true
	}
	match := 0
	for _, k := range s.keys {
		match |= subtle.ConstantTimeCompare([]byte(key), k)
	}
	return match == 1
}
