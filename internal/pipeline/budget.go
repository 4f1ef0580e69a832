package pipeline

import (
	"errors"
	"fmt"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/dustin/go-humanize"
)

// The default memory budget is derived from the machine: on CPU the host's
// memory (the cgroup's limit when it is lower than the RAM), on CUDA the
// device's memory; in both cases 90% of it (the rest is the system's, and
// on CUDA the driver's context), minus the model's weights, and on CPU
// minus the prompt cache and processReserve, which hold host memory for
// good.
const (
	budgetShare = 0.9
	// processReserve is the idle process besides the weights: the Go
	// runtime, ONNX Runtime's code, the tokenizer, HTTP buffers (106 MiB
	// idle with the tiny model's 7 MB of weights).
	processReserve = 256 << 20
)

// BudgetConfig is what a derived budget depends on.
type BudgetConfig struct {
	Provider string
	DeviceID int
	// ModelBytes is the weights' size (ModelBytes of the manifest).
	ModelBytes int64
	// PromptCacheBytes bounds the prompt-embedding cache (host memory).
	PromptCacheBytes int64
}

// DerivedBudget is a budget with how it was found, for the start-up log.
type DerivedBudget struct {
	Bytes  int64
	Total  int64  // the memory it was derived from
	Source string // "cgroup limit", "RAM" or "device memory"
}

func (d DerivedBudget) String() string {
	return fmt.Sprintf("%s (from %s of %s)", humanize.IBytes(uint64(d.Bytes)), d.Source, humanize.IBytes(uint64(d.Total)))
}

// DeriveBudget finds the machine's memory for cfg's provider and derives
// the budget from it.
func DeriveBudget(cfg BudgetConfig) (DerivedBudget, error) {
	var d DerivedBudget
	var err error
	gpu := onGPU(cfg.Provider)
	if gpu {
		d.Source = "device memory"
		d.Total, err = deviceMemory(cfg.DeviceID)
	} else {
		d.Total, d.Source, err = hostMemory()
	}
	if err != nil {
		return d, fmt.Errorf("memory budget: %w (set it explicitly)", err)
	}
	d.Bytes = budgetFrom(d.Total, cfg.ModelBytes, cfg.PromptCacheBytes, gpu)
	if d.Bytes <= 0 {
		return d, fmt.Errorf("memory budget: %s of %s cannot hold the model's %s of weights",
			d.Source, humanize.IBytes(uint64(d.Total)), humanize.IBytes(uint64(cfg.ModelBytes)))
	}
	return d, nil
}

// budgetFrom is the budget left of total memory.
func budgetFrom(total, model, cache int64, gpu bool) int64 {
	b := int64(budgetShare*float64(total)) - model
	if !gpu {
		b -= cache + processReserve
	}
	return max(b, 0)
}

// hostMemory is the RAM, or the cgroup's memory limit when lower.
func hostMemory() (int64, string, error) {
	ram, err := memlimit.FromSystem()
	if err != nil {
		return 0, "", fmt.Errorf("total RAM: %w", err)
	}
	limit, err := memlimit.FromCgroup()
	switch {
	case err == nil && limit < ram:
		return int64(limit), "cgroup limit", nil
	case err == nil, errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup):
		return int64(ram), "RAM", nil
	}
	return 0, "", fmt.Errorf("cgroup memory limit: %w", err)
}

// ModelBytes is the size of the graphs (and their external data) the
// models of one process load, each file once: variants share byte-identical
// graphs (the text encoder of one size), which the process loads once
// (SessionPool).
func ModelBytes(mans ...*Manifest) int64 {
	var n int64
	seen := map[string]bool{}
	for _, m := range mans {
		for _, name := range graphNames() {
			g, ok := m.Graphs[name]
			if !ok {
				continue
			}
			for _, f := range []string{g.File, g.ExternalData} {
				id, ok := m.Files[f]
				if f == "" || !ok || seen[id.SHA256] {
					continue
				}
				seen[id.SHA256] = true
				n += id.Bytes
			}
		}
	}
	return n
}
