package worker

import (
	"bufio"
	"os"
	"reflect"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// TestDecodePayloadVersion1 reads payloads captured from the build before
// payloads had a version, and checks every field lands where it did.
func TestDecodePayloadVersion1(t *testing.T) {
	f, err := os.Open("testdata/payload_v1.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Payload
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p, err := DecodePayload(sc.Bytes(), wire.DefaultCatalog())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) != 2 {
		t.Fatalf("%d payloads", len(got))
	}
	seed := int64(11)
	want := Payload{Version: 1, PreviewEvery: 4, Input: wire.Params{Endpoint: wire.EndpointBase.ID,
		Prompt: "a fox, 雪", NegativePrompt: "blurry", GuidanceScale: 3.5, NumInferenceSteps: 9,
		Size: wire.Size{Width: 96, Height: 64}, NumImages: 3, Seed: &seed, Acceleration: engine.AccelerationHigh,
		EnableSafetyChecker: false, OutputFormat: engine.FormatWebP, SyncMode: true,
		CNS: cns.Params{Enable: true, SChurn: 1.5, GammaSource: cns.GammaSourceApproximation, PowerGamma: 0.75,
			GammaDivider: 1.73, AlphaTiltStart: 0.15, AlphaTiltEnd: -0.5, AlphaUseFnorm: true, AlphaExpInterp: true,
			AlphaExpSharpness: 0.75, NumFreqBins: 64, EnergyScale: 0.98},
	}}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("version 1 payload\n got %+v\nwant %+v", got[0], want)
	}
	// The second was written with every default: it must equal what today's
	// resolver makes of the same input.
	now, err := wire.ParseInput([]byte(`{"prompt":"a cat","seed":42}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[1].Input, now) {
		t.Fatalf("defaults drifted from version 1\n got %+v\nwant %+v", got[1].Input, now)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	in, err := wire.ParseInput([]byte(`{"prompt":"x","seed":5,"output_format":"jpeg"}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := EncodePayload(Payload{Input: in, PreviewEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePayload(raw, wire.DefaultCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != PayloadVersion || p.PreviewEvery != 2 || !reflect.DeepEqual(p.Input, in) {
		t.Fatalf("round trip %+v", p)
	}
	for name, raw := range map[string]string{
		"newer version": `{"v":99,"input":{"prompt":"x","seed":1}}`,
		"no seed":       `{"v":2,"input":{"prompt":"x"}}`,
		"not json":      `{"v":`,
	} {
		if _, err := DecodePayload([]byte(raw), wire.DefaultCatalog()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
