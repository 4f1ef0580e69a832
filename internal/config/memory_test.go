package config

import (
	"strings"
	"testing"
)

func TestMemoryBudget(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want int64
		show string
	}{
		{nil, nil, MemoryBudgetAuto, "auto"},
		{[]string{"-memory-budget", "off"}, nil, MemoryBudgetOff, "off"},
		{[]string{"-memory-budget", "0"}, nil, MemoryBudgetOff, "off"},
		{[]string{"-memory-budget", "6GiB"}, nil, 6 << 30, "6.0 GiB"},
		{[]string{"-memory-budget", "1.5 GB"}, nil, 1_500_000_000, "1.4 GiB"},
		{[]string{"-memory-budget", "4096"}, nil, 4096, "4.0 KiB"},
		{nil, map[string]string{"KLEINSERVE_MEMORY_BUDGET": "2G"}, 2_000_000_000, "1.9 GiB"},
		{[]string{"-memory-budget", "AUTO"}, map[string]string{"KLEINSERVE_MEMORY_BUDGET": "2G"}, MemoryBudgetAuto, "auto"},
	} {
		c, err := Load(tc.args, env(tc.env), noFiles)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if c.MemoryBudget != tc.want || c.MemoryBudgetString() != tc.show || c.Redacted()["memory_budget"] != tc.show {
			t.Errorf("%v %v: budget %d (%q), want %d (%q)", tc.args, tc.env, c.MemoryBudget, c.MemoryBudgetString(), tc.want, tc.show)
		}
	}
	for _, bad := range []string{"lots", "-5GiB", "6 parsecs"} {
		if _, err := Load([]string{"-memory-budget", bad}, env(nil), noFiles); err == nil ||
			!strings.Contains(err.Error(), "-memory-budget") {
			t.Errorf("-memory-budget %q: %v", bad, err)
		}
	}
}

func TestPromptCache(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil || c.PromptCacheBytes != 256<<20 {
		t.Fatalf("default %d, %v", c.PromptCacheBytes, err)
	}
	if c, err = Load([]string{"-prompt-cache", "0"}, env(nil), noFiles); err != nil || c.PromptCacheBytes != 0 {
		t.Fatalf("0: %d, %v", c.PromptCacheBytes, err)
	}
	if _, err := Load([]string{"-prompt-cache", "-1"}, env(nil), noFiles); err == nil || !strings.Contains(err.Error(), "-prompt-cache") {
		t.Fatalf("-1: %v", err)
	}
}
