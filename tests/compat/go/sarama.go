package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// saramaProduce: sarama's SyncProducer with acks=all in every codec, read back with its
// partition consumer where each delivery report put the record.
func saramaProduce(bootstrap string) (string, error) {
	const n = 300
	codecs := map[string]sarama.CompressionCodec{"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP,
		"snappy": sarama.CompressionSnappy, "lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD}
	for _, name := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		topic := "sarama-" + name + "-" + runTag
		if err := saramaCreate(bootstrap, topic, 3); err != nil {
			return "", err
		}
		cfg := sarama.NewConfig()
		cfg.Producer.Compression = codecs[name]
		where, err := saramaSend(bootstrap, cfg, topic, name, n)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if err := verifyDelivery(where, n, map[int32]int64{}); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		got, err := saramaReadAll(bootstrap, topic, n)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if err := verifyReadBack(got, where, name, n); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	return fmt.Sprintf("%d keyed records each in none gzip snappy lz4 zstd (acks=all), partition consumer read-back", n), nil
}

// saramaGroup: two members of a sarama ConsumerGroup share a 4-partition topic 2+2, read
// every record once and mark them; the committed offsets equal the end offsets.
func saramaGroup(bootstrap string) (string, error) {
	topic, group := "sarama-group-"+runTag, "sarama-g-"+runTag
	if err := saramaCreate(bootstrap, topic, 4); err != nil {
		return "", err
	}
	const n = 400
	where, err := saramaSend(bootstrap, sarama.NewConfig(), topic, "grp", n)
	if err != nil {
		return "", err
	}
	cfg := sarama.NewConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()
	h := &collector{want: n, claims: map[string]int{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	var groupErrs []error
	var mu sync.Mutex
	for m := 0; m < 2; m++ {
		cg, err := sarama.NewConsumerGroup([]string{bootstrap}, group, cfg)
		if err != nil {
			return "", err
		}
		member := fmt.Sprintf("m%d", m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cg.Close()
			go func() {
				for e := range cg.Errors() {
					mu.Lock()
					groupErrs = append(groupErrs, e)
					mu.Unlock()
				}
			}()
			for ctx.Err() == nil {
				if err := cg.Consume(ctx, []string{topic}, h.member(member)); err != nil {
					mu.Lock()
					groupErrs = append(groupErrs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) < n {
		return "", fmt.Errorf("read %d of %d records (errors: %v)", len(h.got), n, groupErrs)
	}
	if err := verifyReadBack(h.got, where, "grp", n); err != nil {
		return "", err
	}
	if h.claims["m0"] != 2 || h.claims["m1"] != 2 {
		return "", fmt.Errorf("the two members never held 2 partitions each at once: %v", h.claims)
	}
	if err := saramaCommittedAtEnd(bootstrap, group, topic); err != nil {
		return "", err
	}
	return fmt.Sprintf("2 members split 4 partitions 2+2, %d records read once, committed offsets = end offsets", n), nil
}

// collector is a ConsumerGroupHandler shared by the members; it remembers the most partitions
// each member held in one generation.
type collector struct {
	mu     sync.Mutex
	want   int
	got    []read
	claims map[string]int
	done   chan struct{}
	closed bool
}

type memberHandler struct {
	*collector
	name string
}

func (c *collector) member(name string) sarama.ConsumerGroupHandler {
	return memberHandler{c, name}
}

func (h memberHandler) Setup(s sarama.ConsumerGroupSession) error {
	held := 0
	for _, partitions := range s.Claims() {
		held += len(partitions)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if held > h.claims[h.name] {
		h.claims[h.name] = held
	}
	return nil
}

func (h memberHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h memberHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		h.got = append(h.got, read{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		if len(h.got) >= h.want && !h.closed && h.claims["m0"] == 2 && h.claims["m1"] == 2 {
			h.closed = true
			close(h.done)
		}
		h.mu.Unlock()
		s.MarkMessage(m, "")
		// Commit at the end of what the partition holds, not per record: each commit waits
		// until it is durable, and 400 synchronous ones dominate the check's time.
		if m.Offset+1 >= claim.HighWaterMarkOffset() {
			s.Commit()
		}
	}
	return nil
}

// saramaOld: sarama pinned to Kafka 0.10.2's protocol negotiates nothing and sends Fetch v3
// and Produce v2, which a Kafka 4 broker no longer serves. It must read UNSUPPORTED_VERSION,
// not a closed connection (io.EOF).
func saramaOld(bootstrap string) (string, error) {
	topic := "sarama-old-" + runTag
	if err := saramaCreate(bootstrap, topic, 1); err != nil {
		return "", err
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V0_10_2_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 0
	p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
	if err != nil {
		return "", fmt.Errorf("producer: %w", err)
	}
	_, _, perr := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("old")})
	p.Close()
	if !errors.Is(perr, sarama.ErrUnsupportedVersion) {
		return "", fmt.Errorf("Produce v2 answered with %v, expected UNSUPPORTED_VERSION", perr)
	}
	cfg = sarama.NewConfig()
	cfg.Version = sarama.V0_10_2_0
	cfg.Consumer.Return.Errors = true
	c, err := sarama.NewConsumer([]string{bootstrap}, cfg)
	if err != nil {
		return "", fmt.Errorf("consumer: %w", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return "", fmt.Errorf("consume partition: %w", err)
	}
	defer pc.Close()
	select {
	case e := <-pc.Errors():
		if !errors.Is(e.Err, sarama.ErrUnsupportedVersion) {
			return "", fmt.Errorf("Fetch v3 answered with %v, expected UNSUPPORTED_VERSION", e.Err)
		}
	case m := <-pc.Messages():
		return "", fmt.Errorf("Fetch v3 returned a record at offset %d", m.Offset)
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer to Fetch v3 within %v", timeout)
	}
	return "sarama with Version=0.10.2.0: Produce v2 and Fetch v3 get UNSUPPORTED_VERSION (not EOF)", nil
}

func saramaCreate(bootstrap, topic string, partitions int32) error {
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer adm.Close()
	return adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
}

func saramaSend(bootstrap string, cfg *sarama.Config, topic, tag string, n int) (map[int]delivered, error) {
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key(i)),
			Value: sarama.StringEncoder(value(tag, i)), Metadata: i}
	}
	if err := p.SendMessages(msgs); err != nil {
		return nil, err
	}
	where := map[int]delivered{}
	for _, m := range msgs {
		where[m.Metadata.(int)] = delivered{m.Partition, m.Offset}
	}
	return where, nil
}

func saramaReadAll(bootstrap, topic string, n int) ([]read, error) {
	c, err := sarama.NewConsumer([]string{bootstrap}, sarama.NewConfig())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return nil, err
	}
	out := make(chan read, n)
	deadline := time.After(timeout)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				out <- read{m.Partition, m.Offset, string(m.Key), string(m.Value)}
			}
		}()
	}
	var got []read
	for len(got) < n {
		select {
		case r := <-out:
			got = append(got, r)
		case <-deadline:
			return got, fmt.Errorf("read %d of %d records", len(got), n)
		}
	}
	return got, nil
}

func saramaCommittedAtEnd(bootstrap, group, topic string) error {
	client, err := sarama.NewClient([]string{bootstrap}, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	adm, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return err
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return err
	}
	offsets, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return err
	}
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		b := offsets.GetBlock(topic, p)
		if b == nil || b.Offset != end {
			return fmt.Errorf("partition %d: committed %v, end offset %d", p, b, end)
		}
	}
	return nil
}
