package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// handleUploadInitiate: POST /storage/upload/initiate (also reached as
// .../initiate?storage_type=fal-cdn-v3). Body {content_type, file_name},
// both optional; the answer says where to PUT the bytes.
func (s *Server) handleUploadInitiate(w http.ResponseWriter, r *http.Request) {
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
	up, err := s.store.InitiateUpload(req.ContentType, req.FileName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, s.log, http.StatusOK, wire.UploadInitiateResponse{UploadURL: up.UploadURL, FileURL: up.FileURL})
}

// handleUploadPut: PUT /storage/upload/{uploadID} with the raw bytes.
func (s *Server) handleUploadPut(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, s.store.MaxUploadBytes())
	f, err := s.store.CompleteUpload(r.Context(), chi.URLParam(r, "uploadID"), body, r.Header.Get("Content-Type"))
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
