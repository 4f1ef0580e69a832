package worker

import (
	"encoding/json"
	"fmt"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// PayloadVersion is the schema version of the job payloads this build
// writes. Jobs outlive the process that queued them (restarts, upgrades,
// API and worker processes of different builds on one Redis queue), so
// every reader accepts every version still in use:
//
//	1: {"input": wire.Params, "preview_every": N}, no "v" field (up to the
//	   first versioned build); every job was text-to-image
//	2: the same fields plus "v": 2, and input.endpoint names the endpoint
//
// A change to Params that renames or reinterprets a field needs a new
// version and a conversion in DecodePayload.
const PayloadVersion = 2

// Payload is what a queued generation job carries.
type Payload struct {
	Version int `json:"v"`
	// Input is the validated input; its Seed is always set.
	Input wire.Params `json:"input"`
	// PreviewEvery asks the engine for previews every N steps (streams).
	PreviewEvery int `json:"preview_every,omitempty"`
}

// EncodePayload writes p at the current version.
func EncodePayload(p Payload) ([]byte, error) {
	p.Version = PayloadVersion
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode job payload: %w", err)
	}
	return raw, nil
}

// DecodePayload reads a payload of any supported version, for an endpoint
// the catalog serves.
func DecodePayload(raw []byte, cat *wire.Catalog) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return Payload{}, fmt.Errorf("decode job payload: %w", err)
	}
	switch p.Version {
	case 0: // version 1 had no "v"; its fields are version 2's
		p.Version = 1
		p.Input.Endpoint = wire.EndpointBase.ID
	case PayloadVersion:
	default:
		return Payload{}, fmt.Errorf("decode job payload: version %d is newer than this build's %d", p.Version, PayloadVersion)
	}
	if p.Input.Seed == nil {
		return Payload{}, fmt.Errorf("decode job payload: no seed")
	}
	if _, ok := cat.Lookup(p.Input.Endpoint); !ok {
		return Payload{}, fmt.Errorf("decode job payload: endpoint %q is not served here", p.Input.Endpoint)
	}
	return p, nil
}
