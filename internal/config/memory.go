package config

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
)

// -memory-budget values besides sizes.
const (
	MemoryBudgetAutoName = "auto"
	MemoryBudgetOffName  = "off"
	// MemoryBudgetAuto derives the budget from the machine the model runs
	// on (a -role api process has none to derive it from: see
	// docs/operations.md).
	MemoryBudgetAuto = -1
	// MemoryBudgetOff admits every size the model's limits allow.
	MemoryBudgetOff = 0
)

// parseMemoryBudget reads auto, off, or a size (bytes, or with a unit:
// 6GiB, 6 GB, 6G).
func parseMemoryBudget(v string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case MemoryBudgetAutoName:
		return MemoryBudgetAuto, nil
	case MemoryBudgetOffName, "0":
		return MemoryBudgetOff, nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("config: -memory-budget %q: want auto, off or a size such as 6GiB", v)
	}
	return int64(n), nil
}

// MemoryBudgetString renders MemoryBudget as the flag takes it.
func (c Config) MemoryBudgetString() string {
	switch {
	case c.MemoryBudget == MemoryBudgetAuto:
		return MemoryBudgetAutoName
	case c.MemoryBudget == MemoryBudgetOff:
		return MemoryBudgetOffName
	}
	return humanize.IBytes(uint64(c.MemoryBudget))
}
