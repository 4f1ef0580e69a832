package redisstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// liveBuffer is how many received messages a subscription holds while its
// callback catches up (the callback must not block, so it stays short).
const liveBuffer = 64

// Publish implements queue.SharedStore with PUBLISH on the job's channel.
func (s *Store) Publish(ctx context.Context, id string, msg []byte) error {
	if err := s.rdb.Publish(ctx, s.keys.live(id), msg).Err(); err != nil {
		return fmt.Errorf("queue: publish live event of %s: %w", id, err)
	}
	return nil
}

// Subscribe implements queue.SharedStore with SUBSCRIBE on the job's
// channel, on a connection of its own. It returns once Redis confirmed the
// subscription, so every message published afterwards reaches fn, in
// order (a message published while the connection was down is lost).
func (s *Store) Subscribe(ctx context.Context, id string, fn func(msg []byte)) (func(), error) {
	channel := s.keys.live(id)
	sub := s.rdb.Subscribe(ctx, channel)
	if _, err := sub.Receive(ctx); err != nil {
		sub.Close()
		return nil, fmt.Errorf("queue: subscribe to %s: %w", channel, err)
	}
	messages := sub.Channel(redis.WithChannelSize(liveBuffer))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-messages:
				if !ok {
					return
				}
				fn([]byte(m.Payload))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}, nil
}
