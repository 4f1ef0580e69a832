package lora

import (
	"errors"
	"fmt"
)

// Error kinds. Every error this package returns for a bad file wraps one
// of them, so callers can answer a client with errors.Is and the message,
// which names the file's offending key and never a server path.
var (
	// ErrFormat: the bytes are not a well-formed safetensors file.
	ErrFormat = errors.New("not a valid safetensors file")
	// ErrUnknownKey: a tensor name that maps to no LoRA target of the model.
	ErrUnknownKey = errors.New("key matches no LoRA target of this model")
	// ErrShape: a tensor whose shape does not fit its target.
	ErrShape = errors.New("shape does not match the model")
	// ErrIncomplete: a down (A) factor without its up (B) factor, or the reverse.
	ErrIncomplete = errors.New("LoRA pair incomplete")
	// ErrDuplicate: two keys that load into the same target.
	ErrDuplicate = errors.New("target given twice")
	// ErrValue: NaN or infinity in a tensor, or a bad alpha.
	ErrValue = errors.New("bad value")
	// ErrUnsupported: an adapter type other than LoRA (LoKr, LoHa, DoRA, full diffs).
	ErrUnsupported = errors.New("unsupported adapter type")
	// ErrEmpty: a file without a single LoRA tensor.
	ErrEmpty = errors.New("file holds no LoRA weights")
)

// KeyError is a problem with one tensor of a LoRA file. Key is the name as
// written in the file.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("LoRA key %q: %v", e.Key, e.Err) }

func (e *KeyError) Unwrap() error { return e.Err }
