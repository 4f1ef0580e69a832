package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// handleUploadInitiate: POST /storage/upload/initiate (also reached as
// .../initiate?storage_type=fal-cdn-v3). Body {content_type, file_name},
// both optional; the answer says where to PUT the bytes.
func (s *Server) handleUploadInitiate(w http.ResponseWriter, r *http.Request) {
	s.initiateUpload(w, r, false)
}

// handleMultipartInitiate: POST /storage/upload/initiate-multipart, used by
// the JS client for files over 90 MB.
func (s *Server) handleMultipartInitiate(w http.ResponseWriter, r *http.Request) {
	s.initiateUpload(w, r, true)
}

func (s *Server) initiateUpload(w http.ResponseWriter, r *http.Request, multipart bool) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req wire.UploadInitiateRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			s.writeError(w, r, wire.NewValidationError([]any{"body"},
				"Input should be an object with content_type and file_name strings", "model_attributes_type"))
			return
		}
	}
	initiate := s.store.InitiateUpload
	if multipart {
		initiate = s.store.InitiateMultipartUpload
	}
	up, err := initiate(r.Context(), req.ContentType, req.FileName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, wire.UploadInitiateResponse{UploadURL: up.UploadURL, FileURL: up.FileURL})
}

// handleUploadPut: PUT /storage/upload/{uploadID}?token=… with the raw
// bytes (the token authorizes the write; see internal/storage).
func (s *Server) handleUploadPut(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, s.store.MaxUploadBytes())
	f, err := s.store.CompleteUpload(r.Context(), chi.URLParam(r, "uploadID"), r.URL.Query().Get("token"), body, r.Header.Get("Content-Type"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, map[string]any{"file_url": f.URL, "file_size": f.Size, "content_type": f.ContentType})
}

// handleFile: GET/HEAD /files/{key}.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Serve(w, r, chi.URLParam(r, "key")); err != nil {
		s.writeError(w, r, err)
	}
}

// handlePartPut: PUT /storage/upload/{uploadID}/{partNumber}; answers the
// {partNumber, etag} the client lists when completing.
func (s *Server) handlePartPut(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(chi.URLParam(r, "partNumber"))
	if err != nil {
		s.writeError(w, r, wire.NewValidationError([]any{"path", "partNumber"}, "Input should be a valid integer", "int_parsing"))
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.store.MaxUploadBytes())
	part, err := s.store.PutPart(r.Context(), chi.URLParam(r, "uploadID"), r.URL.Query().Get("token"), n, body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, part)
}

// handleMultipartComplete: POST /storage/upload/{uploadID}/complete with
// {"parts":[{"partNumber":1,"etag":"…"},…]}.
func (s *Server) handleMultipartComplete(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req struct {
		Parts []storage.Part `json:"parts"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.writeError(w, r, wire.NewValidationError([]any{"body", "parts"},
			"Input should be a list of {partNumber, etag} objects", "list_type"))
		return
	}
	f, err := s.store.CompleteMultipart(r.Context(), chi.URLParam(r, "uploadID"), r.URL.Query().Get("token"), req.Parts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, map[string]any{"file_url": f.URL, "file_size": f.Size, "content_type": f.ContentType})
}

// cdnTokenLifetime is how long a token from /storage/auth/token is
// announced to be valid; clients refresh it after that.
const cdnTokenLifetime = time.Hour

// handleCDNToken: POST /storage/auth/token?storage_type=fal-cdn-v3, which
// fal's Python client asks before uploading straight to fal's CDN. This
// server is its own CDN: the token is the caller's own credential (nothing
// it does not already hold), and base_url is this server.
func (s *Server) handleCDNToken(w http.ResponseWriter, r *http.Request) {
	_, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	writeJSON(w, s.log, http.StatusOK, map[string]string{
		"token": strings.TrimSpace(cred), "token_type": "Bearer", "base_url": s.opts.PublicURL,
		"expires_at": time.Now().Add(cdnTokenLifetime).UTC().Format(time.RFC3339),
	})
}

// handleCDNUpload: POST /files/upload with the raw bytes, Content-Type and
// an optional X-Fal-File-Name: the upload fal's Python client makes to the
// CDN, answered with {access_url}.
func (s *Server) handleCDNUpload(w http.ResponseWriter, r *http.Request) {
	up, err := s.store.InitiateUpload(r.Context(), r.Header.Get("Content-Type"), r.Header.Get("X-Fal-File-Name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.store.MaxUploadBytes())
	f, err := s.store.CompleteUpload(r.Context(), up.ID, up.Token, body, r.Header.Get("Content-Type"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, map[string]any{"access_url": f.URL, "file_size": f.Size, "content_type": f.ContentType})
}
