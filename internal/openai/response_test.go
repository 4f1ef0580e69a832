package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

const falOutputSync = `{"images":[
	{"url":"data:image/png;base64,AAAA","content_type":"image/png","width":96,"height":64},
	{"url":"data:image/png;base64,BBBB","content_type":"image/png","width":96,"height":64}],
	"seed":42,"has_nsfw_concepts":[false,false],"prompt":"p","timings":{"inference":1}}`

const falOutputURL = `{"images":[{"url":"http://h/files/a.jpg","content_type":"image/jpeg","width":1024,"height":768}],
	"seed":7,"has_nsfw_concepts":[false],"prompt":"p"}`

func TestBuildResponse(t *testing.T) {
	cases := []struct {
		name   string
		req    Request
		output string
		want   ImagesResponse
	}{
		{"b64_json", Request{ResponseFormat: FormatB64JSON, OutputFormat: "png"}, falOutputSync, ImagesResponse{
			Created: 1700000000, Data: []Image{{B64JSON: "AAAA"}, {B64JSON: "BBBB"}}, Background: "opaque",
			OutputFormat: "png", Size: "96x64", Usage: &Usage{}, Seed: 42}},
		{"url; format from the content type", Request{ResponseFormat: FormatURL, OutputFormat: "png"}, falOutputURL, ImagesResponse{
			Created: 1700000000, Data: []Image{{URL: "http://h/files/a.jpg"}}, Background: "opaque",
			OutputFormat: "jpeg", Size: "1024x768", Usage: &Usage{}, Seed: 7}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := BuildResponse(c.req, json.RawMessage(c.output), 1700000000)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got %+v\nwant %+v", *got, c.want)
			}
		})
	}
}

func TestBuildResponseWireShape(t *testing.T) {
	got, err := BuildResponse(Request{ResponseFormat: FormatURL}, json.RawMessage(falOutputURL), 5)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(got)
	want := `{"created":5,"data":[{"url":"http://h/files/a.jpg"}],"background":"opaque","output_format":"jpeg","size":"1024x768",` +
		`"usage":{"input_tokens":0,"input_tokens_details":{"image_tokens":0,"text_tokens":0},"output_tokens":0,"total_tokens":0},"seed":7}`
	if string(raw) != want {
		t.Errorf("got  %s\nwant %s", raw, want)
	}
}

func TestBuildResponseRejectsBadOutput(t *testing.T) {
	for _, c := range []struct {
		format, output string
	}{
		{FormatURL, `{"images":[]}`},
		{FormatURL, `not json`},
		{FormatB64JSON, falOutputURL},
		{FormatB64JSON, `{"images":[{"url":"data:image/png,raw"}]}`},
	} {
		if _, err := BuildResponse(Request{ResponseFormat: c.format}, json.RawMessage(c.output), 0); err == nil {
			t.Errorf("%s %s: accepted", c.format, c.output)
		}
	}
}

func TestStreamEvents(t *testing.T) {
	jpeg := []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")
	gen := Request{Kind: Generation, Size: "96x64", OutputFormat: "png"}
	p := PartialEvent(gen, 1, jpeg, 9)
	raw, _ := json.Marshal(p)
	want := `{"type":"image_generation.partial_image","b64_json":"/9j/4AAQSkZJRgA=","created_at":9,"size":"96x64",` +
		`"quality":"auto","background":"opaque","output_format":"jpeg","partial_image_index":1}`
	if string(raw) != want {
		t.Errorf("partial\n got %s\nwant %s", raw, want)
	}
	edit := Request{Kind: Edit, Size: SizeAuto, OutputFormat: "png"}
	if PartialEvent(edit, 0, jpeg, 9).Type != EventEditPartial {
		t.Error("edit partial type")
	}

	events, err := CompletedEvents(gen, json.RawMessage(falOutputSync), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[1].B64JSON != "BBBB" || events[0].Type != EventGenerationCompleted || events[0].Size != "96x64" ||
		events[0].Usage == nil || events[0].PartialImageIndex != nil {
		t.Errorf("completed %+v", events)
	}
	raw, _ = json.Marshal(events[0])
	want = `{"type":"image_generation.completed","b64_json":"AAAA","created_at":10,"size":"96x64","quality":"auto",` +
		`"background":"opaque","output_format":"png","usage":{"input_tokens":0,"input_tokens_details":{"image_tokens":0,"text_tokens":0},"output_tokens":0,"total_tokens":0}}`
	if string(raw) != want {
		t.Errorf("completed\n got %s\nwant %s", raw, want)
	}
	events, _ = CompletedEvents(edit, json.RawMessage(falOutputSync), 10)
	if events[0].Type != EventEditCompleted {
		t.Error("edit completed type")
	}
	if _, err := CompletedEvents(gen, json.RawMessage(falOutputURL), 0); err == nil {
		t.Error("completed events from stored images")
	}
}

func TestPartialSchedule(t *testing.T) {
	cases := []struct {
		want, total, every int
		steps              []int
	}{
		{3, 28, 4, []int{8, 16, 24}},
		{1, 28, 4, []int{16}},
		{2, 12, 4, []int{4, 8}},
		{3, 8, 4, []int{4}}, // fewer previews than asked: as many as there are
		{0, 28, 4, nil},
		{3, 28, 1, []int{7, 14, 21}},
		{2, 4, 1, []int{2, 3}},
	}
	for _, c := range cases {
		s := partialSchedule{want: c.want}
		var got []int
		for step := c.every; step < c.total; step += c.every {
			if s.take(step, c.total) {
				got = append(got, step)
			}
		}
		if !reflect.DeepEqual(got, c.steps) {
			t.Errorf("want=%d total=%d every=%d: took %v, expected %v", c.want, c.total, c.every, got, c.steps)
		}
	}
}

// Property: with a preview every step, exactly min(want, total-1) are
// taken, at increasing steps, none before its share of the run.
func TestPartialScheduleProperty(t *testing.T) {
	for want := 0; want <= MaxPartialImages; want++ {
		for total := 1; total <= 50; total++ {
			s := partialSchedule{want: want}
			var taken []int
			for step := 1; step < total; step++ {
				if s.take(step, total) {
					taken = append(taken, step)
				}
			}
			if len(taken) != min(want, total-1) {
				t.Fatalf("want=%d total=%d: took %v", want, total, taken)
			}
			for k, step := range taken {
				if step*(want+1) < (k+1)*total {
					t.Fatalf("want=%d total=%d: partial %d at step %d, before its share", want, total, k, step)
				}
			}
		}
	}
}
