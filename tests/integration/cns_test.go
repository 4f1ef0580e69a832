package integration

import (
	"fmt"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestCNSThroughTheAPI checks Colored Noise Sampling end to end on the real
// engine (docs/cns.md):
// enable_cns with cns_s_churn 0 is the plain sampler byte for byte; churn
// 0.5 changes the image; the same CNS request twice gives the same bytes;
// out-of-range CNS fields are 422s naming the field. The safety checker is
// off: the tiny model's random checker would black out some images.
func TestCNSThroughTheAPI(t *testing.T) {
	root := testenv.RepoRoot(t)
	srv := startServer(t, serverBinary(t, root), root, t.TempDir(), testenv.FreePort(t))
	image := func(extra string) string {
		t.Helper()
		body := fmt.Sprintf(`{"prompt": "a koi pond in morning mist", "image_size": {"width": 96, "height": 64},
			"num_inference_steps": 6, "seed": 1234, "sync_mode": true, "acceleration": "none",
			"enable_safety_checker": false%s}`, extra)
		code, out := srv.call("POST", "/fal-ai/flux-2/klein/4b/base", body)
		if code != 200 {
			t.Fatalf("run %s: %d %v", extra, code, out)
		}
		images := out["images"].([]any)
		return images[0].(map[string]any)["url"].(string) // a data URI: the image bytes
	}
	plain := image(``)
	if zero := image(`, "enable_cns": true, "cns_s_churn": 0`); zero != plain {
		t.Error("enable_cns with cns_s_churn 0 differs from the plain sampler")
	}
	churn := image(`, "enable_cns": true, "cns_s_churn": 0.5`)
	if churn == plain {
		t.Error("cns_s_churn 0.5 returned the plain sampler's image")
	}
	if again := image(`, "enable_cns": true, "cns_s_churn": 0.5`); again != churn {
		t.Error("the same CNS request twice returned different bytes")
	}
	if other := image(`, "enable_cns": true, "cns_s_churn": 0.5, "cns_gamma_source": "approximation", "cns_alpha_tilt_end": 1.5`); other == churn {
		t.Error("changing gamma source and tilt did not change the CNS image")
	}
	for field, value := range map[string]string{
		"cns_s_churn": "2.5", "cns_power_gamma": "0.05", "cns_gamma_divider": "51", "cns_energy_scale": "2",
		"cns_alpha_tilt_start": "-3", "cns_alpha_exp_sharpness": "11", "cns_num_freq_bins": "7",
		"cns_gamma_source": `"learned"`, "enable_cns": `"yes"`,
	} {
		code, out := srv.call("POST", "/fal-ai/flux-2/klein/4b/base",
			fmt.Sprintf(`{"prompt": "x", "enable_cns": true, %q: %s}`, field, value))
		if code != 422 || fmt.Sprint(out["detail"]) == "" {
			t.Errorf("%s=%s: %d %v", field, value, code, out)
			continue
		}
		loc := out["detail"].([]any)[0].(map[string]any)["loc"].([]any)
		if loc[len(loc)-1] != field {
			t.Errorf("%s=%s: 422 names %v", field, value, loc)
		}
	}
}
