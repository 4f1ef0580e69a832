package pipeline

// Architecture holds the model dimensions the FLOP accounting needs, read
// from the manifest's "architecture" (diffusers/transformers config names).
type Architecture struct {
	Transformer struct {
		InChannels        int     `json:"in_channels"`
		NumLayers         int     `json:"num_layers"`
		NumSingleLayers   int     `json:"num_single_layers"`
		AttentionHeadDim  int     `json:"attention_head_dim"`
		NumAttentionHeads int     `json:"num_attention_heads"`
		JointAttentionDim int     `json:"joint_attention_dim"`
		MLPRatio          float64 `json:"mlp_ratio"`
		TimestepChannels  int     `json:"timestep_guidance_channels"`
	} `json:"transformer"`
	TextEncoder struct {
		HiddenSize        int `json:"hidden_size"`
		IntermediateSize  int `json:"intermediate_size"`
		NumAttentionHeads int `json:"num_attention_heads"`
		NumKeyValueHeads  int `json:"num_key_value_heads"`
		HeadDim           int `json:"head_dim"`
	} `json:"text_encoder"`
	VAE struct {
		BlockOutChannels []int `json:"block_out_channels"`
		LayersPerBlock   int   `json:"layers_per_block"`
		LatentChannels   int   `json:"latent_channels"`
		SampleSize       int   `json:"sample_size"`
	} `json:"vae"`
	SafetyChecker struct {
		Vision struct {
			HiddenSize        int `json:"hidden_size"`
			IntermediateSize  int `json:"intermediate_size"`
			NumAttentionHeads int `json:"num_attention_heads"`
			ImageSize         int `json:"image_size"`
			PatchSize         int `json:"patch_size"`
		} `json:"vision"`
	} `json:"safety_checker"`
}

// The FLOP counts below count a multiply-add as 2 FLOPs and ignore norms,
// RoPE, softmax and element-wise work (under 1% for this model), the
// convention of docs/model.md §9 — so achieved TFLOP/s compare directly
// with a GPU's dense matrix peak.

// TransformerFLOPs is one transformer forward of one sample over imageTokens
// image tokens and textTokens text tokens (25.96 TFLOP for 1024x768 with
// 512 text tokens on the 4B model; docs/model.md §9).
func (a *Architecture) TransformerFLOPs(imageTokens, textTokens int) float64 {
	t := a.Transformer
	D := float64(t.NumAttentionHeads * t.AttentionHeadDim)
	F := t.MLPRatio * D
	Si, St := float64(imageTokens), float64(textTokens)
	S := Si + St
	attention := 4 * S * S * D
	double := 2*S*(4*D*D+3*D*F) + attention
	single := 2*S*(D*(3*D+2*F)+(D+F)*D) + attention
	C := float64(t.InChannels)
	embed := 2*Si*C*D + 2*St*float64(t.JointAttentionDim)*D + 2*Si*D*C
	return float64(t.NumLayers)*double + float64(t.NumSingleLayers)*single + embed
}

// TextEncoderFLOPs is one prompt through the truncated Qwen3 (layers decoder
// layers, seqLen tokens; 2.91 TFLOP for 27 layers and 512, docs/model.md §9).
func (a *Architecture) TextEncoderFLOPs(layers, seqLen int) float64 {
	t := a.TextEncoder
	h, q := float64(t.HiddenSize), float64(t.NumAttentionHeads*t.HeadDim)
	kv, inter, L := float64(t.NumKeyValueHeads*t.HeadDim), float64(t.IntermediateSize), float64(seqLen)
	perLayer := 2*L*(h*q+2*h*kv+q*h+3*h*inter) + 4*L*L*q
	return float64(layers) * perLayer
}

// VAEDecoderFLOPs is one image of width x height pixels through the VAE
// decoder (7.75 TFLOP at 1024x768; docs/model.md §9).
func (a *Architecture) VAEDecoderFLOPs(width, height int) float64 {
	v := a.VAE
	if len(v.BlockOutChannels) == 0 {
		return 0
	}
	conv := func(cin, cout, k int, n float64) float64 { return 2 * float64(cin*cout*k*k) * n }
	n := float64(width/8) * float64(height/8)
	top := v.BlockOutChannels[len(v.BlockOutChannels)-1]
	z := v.LatentChannels
	flops := conv(z, z, 1, n) + conv(z, top, 3, n) // post_quant_conv, conv_in
	flops += 4 * conv(top, top, 3, n)              // mid block: two resnets
	flops += 4*2*float64(top*top)*n + 4*n*n*float64(top)
	prev := top
	for i := len(v.BlockOutChannels) - 1; i >= 0; i-- {
		c := v.BlockOutChannels[i]
		for r := 0; r < v.LayersPerBlock+1; r++ {
			in := c
			if r == 0 {
				in = prev
			}
			flops += conv(in, c, 3, n) + conv(c, c, 3, n)
			if in != c {
				flops += conv(in, c, 1, n)
			}
		}
		if i > 0 { // upsample: nearest x2, then a 3x3 conv
			n *= 4
			flops += conv(c, c, 3, n)
		}
		prev = c
	}
	return flops + conv(prev, 3, 3, n)
}
