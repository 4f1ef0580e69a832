package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/wire"
)

func TestNewAdmission(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    config.Config
		admits bool // a memory check results
		fails  bool
	}{
		{"off", config.Config{Role: config.RoleAll, MemoryBudget: config.MemoryBudgetOff, ModelDir: "../../models/tiny"}, false, false},
		{"auto derives", config.Config{Role: config.RoleAll, MemoryBudget: config.MemoryBudgetAuto, ModelDir: "../../models/tiny", Provider: "cpu"}, true, false},
		{"explicit", config.Config{Role: config.RoleWorker, MemoryBudget: 1 << 30, ModelDir: "../../models/tiny", Provider: "cpu"}, true, false},
		{"api explicit reads model.json", config.Config{Role: config.RoleAPI, MemoryBudget: 1 << 30, ModelDir: "../../models/tiny", Provider: "cuda"}, true, false},
		{"api auto checks nothing", config.Config{Role: config.RoleAPI, MemoryBudget: config.MemoryBudgetAuto, ModelDir: "../../models/tiny"}, false, false},
		{"api without a manifest checks nothing", config.Config{Role: config.RoleAPI, MemoryBudget: 1 << 30, ModelDir: t.TempDir()}, false, false},
		{"worker without a manifest fails", config.Config{Role: config.RoleWorker, MemoryBudget: 1 << 30, ModelDir: t.TempDir()}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newAdmission(tc.cfg, zerolog.Nop())
			if (err != nil) != tc.fails || (a != nil) != tc.admits {
				t.Fatalf("admission %v, error %v", a != nil, err)
			}
		})
	}
}

// The submit hook answers fal's 422 naming the field.
func TestAdmitHook(t *testing.T) {
	if admitHook(nil) != nil {
		t.Fatal("no admission must mean no hook")
	}
	a, err := newAdmission(config.Config{Role: config.RoleAll, MemoryBudget: 1 << 30, ModelDir: "../../models/tiny",
		Provider: "cpu"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	admit := admitHook(a)
	params := func(w, h, n int) wire.Params {
		return wire.Params{Size: wire.Size{Width: w, Height: h}, NumImages: n, GuidanceScale: 5, NumInferenceSteps: 28}
	}
	if err := admit(params(512, 512, 1)); err != nil {
		t.Fatalf("512x512: %v", err)
	}
	for _, tc := range []struct {
		p   wire.Params
		loc string
	}{{params(1536, 1536, 1), "[body image_size]"}, {params(768, 768, 4), "[body num_images]"}} {
		var verr *wire.ValidationError
		if err := admit(tc.p); !errors.As(err, &verr) || len(verr.Detail) != 1 ||
			fmt.Sprint(verr.Detail[0].Loc) != tc.loc || verr.Detail[0].Type != "value_error" {
			t.Errorf("%dx%d x%d: %v", tc.p.Size.Width, tc.p.Size.Height, tc.p.NumImages, err)
		}
	}
}
