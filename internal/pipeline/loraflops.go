package pipeline

// LoRAFLOPs is the extra work of rank-r low-rank pairs at every LoRA target
// in one transformer forward of one sample (imageTokens image tokens,
// textTokens text tokens), by the convention of flops.go: a pair adds
// (x·A)·B, 2·tokens·r·(in+out) FLOPs at a linear that sees tokens rows.
// A request without LoRA runs rank-1 zero pairs: LoRAFLOPs(…, 1).
//
// Rows per target: the image stream's linears of a double block see the
// image tokens and its text stream's the text tokens, both with
// q, k, v, out (D→D) and the SwiGLU MLP (D→2F, F→D); a single block's fused
// qkv+MLP projection (D→3D+2F) and output (D+F→D) see both; the input and
// output projections their stream; the timestep and modulation linears one
// row per sample.
func (a *Architecture) LoRAFLOPs(imageTokens, textTokens, rank int) float64 {
	t := a.Transformer
	D := float64(t.NumAttentionHeads * t.AttentionHeadDim)
	F := t.MLPRatio * D
	C, J := float64(t.InChannels), float64(t.JointAttentionDim)
	Si, St := float64(imageTokens), float64(textTokens)
	double := (Si + St) * (8*D + (D + 2*F) + (F + D))
	single := (Si + St) * ((D + 3*D + 2*F) + (D + F + D))
	io := Si*(C+D) + St*(J+D) + Si*(D+C)
	// timestep embedder (channels→D, D→D), double modulations (D→6D twice),
	// single modulation (D→3D), final norm modulation (D→2D).
	perSample := float64(t.TimestepChannels) + D + 2*D + 2*7*D + 4*D + 3*D
	rows := float64(t.NumLayers)*double + float64(t.NumSingleLayers)*single + io + perSample
	return 2 * float64(rank) * rows
}
