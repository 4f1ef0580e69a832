package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/lora"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/storage"
)

// newLoRAStore resolves the paths requests give for LoRA files: URLs
// through the outbound guard, this server's uploads from the file store,
// data: URIs, and names in -lora-dir, with downloads cached on disk.
func newLoRAStore(cfg config.Config, guard *netguard.Guard, files storage.Store) (*lora.Store, error) {
	s, err := lora.NewStore(lora.StoreConfig{
		Fetcher:      guardFetcher{guard},
		Files:        files,
		FilesURL:     cfg.PublicURL + "/files/",
		Dir:          cfg.LoRADir,
		CacheDir:     filepath.Join(cfg.DataDir, "lora-cache"),
		CacheBytes:   cfg.LoRACacheBytes,
		MaxFileBytes: cfg.LoRAMaxBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("LoRA files: %w", err)
	}
	return s, nil
}

// loraFetchTimeout bounds one LoRA download (files reach a gigabyte).
const loraFetchTimeout = 10 * time.Minute

// guardFetcher fetches LoRA URLs through the outbound guard. A refusal or
// failure reads as the guard's reason, which names no address, because it
// reaches the client in a 422.
type guardFetcher struct{ g *netguard.Guard }

func (f guardFetcher) Fetch(ctx context.Context, rawURL string, maxBytes int64) (io.ReadCloser, error) {
	res, err := f.g.Fetch(ctx, rawURL, netguard.Limits{MaxBytes: maxBytes, Timeout: loraFetchTimeout})
	if err != nil {
		var ge *netguard.Error
		if errors.As(err, &ge) {
			return nil, errors.New(ge.Reason())
		}
		return nil, errors.New("the file could not be fetched")
	}
	return io.NopCloser(bytes.NewReader(res.Body)), nil
}
