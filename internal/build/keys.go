package build

// StageKey is a cached stage and its stage cache key, as a build of the
// plan computes it.
type StageKey struct {
	Stage string `json:"stage"`
	Key   string `json:"key"`
}

// StageKeys are the stage cache keys a build of p uses, in stage order:
// the same keys the build's report lists under cache.stages, so that
// identical work is recognisable before it runs (vmdeb plan).
func StageKeys(p *Plan) []StageKey {
	var out []StageKey
	for _, pt := range cachePoints(p, Stages(p)) {
		out = append(out, StageKey{Stage: pt.stage, Key: pt.key})
	}
	return out
}
