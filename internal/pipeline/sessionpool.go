package pipeline

import (
	"fmt"
	"sync"
)

// SessionPool lets the engines of one process share the sessions of graphs
// whose files are byte-identical: the variants of one size share their text
// encoder (the same text_encoder.onnx), which is then loaded once. A pool is
// owned by whoever opens the engines (cmd/server) and outlives them.
type SessionPool struct {
	mu       sync.Mutex
	sessions map[string]*pooledSession
}

type pooledSession struct {
	gs   *graphSession
	refs int
}

// NewSessionPool returns an empty pool.
func NewSessionPool() *SessionPool { return &SessionPool{sessions: map[string]*pooledSession{}} }

// Len is the number of sessions loaded.
func (p *SessionPool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// sessionKey identifies a session a pool may share: the graph's role and
// bytes (the manifest's sha256 of its file and external data), its float
// type and how it runs.
func sessionKey(name string, m *Manifest, floatT string, s sessionSettings) (string, error) {
	g := m.Graphs[name]
	file, ok := m.Files[g.File]
	if !ok || file.SHA256 == "" {
		return "", fmt.Errorf("graph %s: model.json names no sha256 for %s", name, g.File)
	}
	key := fmt.Sprintf("%s|%s|%s|%s|%d|%d|%d", name, file.SHA256, floatT, s.Provider, s.DeviceID, s.IntraOpThreads, s.InterOpThreads)
	if g.ExternalData != "" {
		data, ok := m.Files[g.ExternalData]
		if !ok || data.SHA256 == "" {
			return "", fmt.Errorf("graph %s: model.json names no sha256 for %s", name, g.ExternalData)
		}
		key += "|" + data.SHA256
	}
	return key, nil
}

// open returns the pool's session for key, opening it with open the first
// time. The caller gives it back with the session's destroy.
func (p *SessionPool) open(key string, open func() (*graphSession, error)) (*graphSession, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.sessions[key]; ps != nil {
		ps.refs++
		return ps.gs, nil
	}
	gs, err := open()
	if err != nil {
		return nil, err
	}
	gs.pool, gs.poolKey = p, key
	p.sessions[key] = &pooledSession{gs: gs, refs: 1}
	return gs, nil
}

// release drops one reference; the last one closes the session.
func (p *SessionPool) release(key string) error {
	p.mu.Lock()
	ps := p.sessions[key]
	if ps == nil {
		p.mu.Unlock()
		return nil
	}
	ps.refs--
	if ps.refs > 0 {
		p.mu.Unlock()
		return nil
	}
	delete(p.sessions, key)
	p.mu.Unlock()
	return ps.gs.close()
}
