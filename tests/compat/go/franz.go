package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franzProduce: franz-go's producer with its defaults (idempotent, acks=all) in every codec,
// then a direct consumer reads each record back where its delivery report put it.
func franzProduce(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	names := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	const n = 500
	for _, codec := range names {
		topic := "franz-" + codec + "-" + runTag
		if err := createTopic(ctx, bootstrap, topic, 3); err != nil {
			return "", err
		}
		where, err := franzSend(ctx, bootstrap, topic, codec, n, kgo.ProducerBatchCompression(codecs[codec]))
		if err != nil {
			return "", fmt.Errorf("%s: %w", codec, err)
		}
		if err := verifyDelivery(where, n, map[int32]int64{}); err != nil {
			return "", fmt.Errorf("%s: %w", codec, err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			return "", err
		}
		got, err := franzPoll(ctx, cl, n)
		cl.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", codec, err)
		}
		if err := verifyReadBack(got, where, codec, n); err != nil {
			return "", fmt.Errorf("%s: %w", codec, err)
		}
	}
	return fmt.Sprintf("%d keyed records each in none gzip snappy lz4 zstd (idempotent, acks=all)", n), nil
}

// franzGroup: two franz-go members of one group (default cooperative-sticky balancer) share a
// 4-partition topic, read every record once, commit, and the lag kadm computes is zero.
func franzGroup(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	topic, group := "franz-group-"+runTag, "franz-g-"+runTag
	if err := createTopic(ctx, bootstrap, topic, 4); err != nil {
		return "", err
	}
	const n = 400
	where, err := franzSend(ctx, bootstrap, topic, "grp", n)
	if err != nil {
		return "", err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit()}
	a, err := kgo.NewClient(opts...)
	if err != nil {
		return "", err
	}
	defer a.Close()
	b, err := kgo.NewClient(opts...)
	if err != nil {
		return "", err
	}
	defer b.Close()
	var got []read
	for len(got) < n || !splitEvenly(ctx, bootstrap, group, 4) {
		if ctx.Err() != nil {
			return "", fmt.Errorf("read %d of %d records; group never split 2+2", len(got), n)
		}
		for _, cl := range []*kgo.Client{a, b} {
			pctx, pcancel := context.WithTimeout(ctx, 200e6)
			more, _ := franzFetch(pctx, cl)
			pcancel()
			got = append(got, more...)
		}
	}
	if err := verifyReadBack(got, where, "grp", n); err != nil {
		return "", err
	}
	for _, cl := range []*kgo.Client{a, b} {
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return "", fmt.Errorf("commit: %w", err)
		}
	}
	adm := kadm.NewClient(a)
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return "", err
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		return "", fmt.Errorf("lag of %s: %w", group, err)
	}
	if total := l.Lag.Total(); total != 0 {
		return "", fmt.Errorf("lag after committing everything is %d, expected 0", total)
	}
	return fmt.Sprintf("2 members split 4 partitions 2+2, %d records read once, committed, lag 0", n), nil
}

// splitEvenly: the group is Stable with 2 members holding `partitions`/2 each.
func splitEvenly(ctx context.Context, bootstrap, group string, partitions int) bool {
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return false
	}
	defer adm.Close()
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return false
	}
	d := ds[group]
	if d.Err != nil || d.State != "Stable" || len(d.Members) != 2 {
		return false
	}
	for _, m := range d.Members {
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			return false
		}
		count := 0
		for _, t := range c.Topics {
			count += len(t.Partitions)
		}
		if count != partitions/2 {
			return false
		}
	}
	return true
}

// kadmAdmin: the admin client lists brokers and topics, creates, describes (configs too) and
// deletes topics, and lists and describes groups.
func kadmAdmin(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return "", err
	}
	defer adm.Close()
	topic := "kadm-" + runTag
	created, err := adm.CreateTopics(ctx, 5, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic)
	if err != nil {
		return "", err
	}
	if err := created.Error(); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	again, err := adm.CreateTopics(ctx, 5, 1, nil, topic)
	if err != nil {
		return "", err
	}
	if e := again.Error(); e == nil {
		return "", fmt.Errorf("creating %s twice succeeded", topic)
	}
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return "", err
	}
	if d := topics[topic]; d.Err != nil || len(d.Partitions) != 5 {
		return "", fmt.Errorf("listed %s with %d partitions (err %v), expected 5", topic, len(d.Partitions), d.Err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return "", err
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		return "", err
	}
	retention := ""
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			retention = c.MaybeValue()
		}
	}
	if retention != "3600000" {
		return "", fmt.Errorf("described retention.ms=%q, created with 3600000", retention)
	}
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return "", err
	}
	if len(md.Brokers) != 1 {
		return "", fmt.Errorf("metadata lists %d brokers", len(md.Brokers))
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return "", err
	}
	if err := ends.Error(); err != nil {
		return "", fmt.Errorf("end offsets: %w", err)
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return "", err
	}
	_ = groups.Sorted()
	deleted, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		return "", err
	}
	if err := deleted.Error(); err != nil {
		return "", fmt.Errorf("delete: %w", err)
	}
	left, err := adm.ListTopics(ctx)
	if err != nil {
		return "", err
	}
	if left.Has(topic) {
		return "", fmt.Errorf("%s still listed after delete", topic)
	}
	return "create (twice: TOPIC_ALREADY_EXISTS), list, describe configs, broker metadata, end offsets, list groups, delete", nil
}

func createTopic(ctx context.Context, bootstrap, topic string, partitions int32) error {
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer adm.Close()
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, topic)
	if err != nil {
		return err
	}
	return resp.Error()
}

// franzSend produces n keyed records with the client's defaults plus `extra` and returns
// where each landed.
func franzSend(ctx context.Context, bootstrap, topic, tag string, n int, extra ...kgo.Opt) (map[int]delivered, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic)}, extra...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	records := make([]*kgo.Record, n)
	for i := range records {
		records[i] = &kgo.Record{Key: []byte(key(i)), Value: []byte(value(tag, i))}
	}
	results := cl.ProduceSync(ctx, records...)
	if err := results.FirstErr(); err != nil {
		return nil, err
	}
	// Results need not come back in the order the records were given: index by value.
	where := map[int]delivered{}
	for _, r := range results {
		parts := strings.SplitN(string(r.Record.Value), ":", 3)
		i, err := strconv.Atoi(parts[1])
		if err != nil {
			return nil, fmt.Errorf("delivery report for a foreign value %q", r.Record.Value)
		}
		where[i] = delivered{r.Record.Partition, r.Record.Offset}
	}
	return where, nil
}

// franzPoll polls until n records arrived.
func franzPoll(ctx context.Context, cl *kgo.Client, n int) ([]read, error) {
	var got []read
	for len(got) < n {
		more, err := franzFetch(ctx, cl)
		if err != nil {
			return got, fmt.Errorf("after %d of %d records: %w", len(got), n, err)
		}
		got = append(got, more...)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].offset < got[j].offset })
	return got, nil
}

func franzFetch(ctx context.Context, cl *kgo.Client) ([]read, error) {
	fetches := cl.PollFetches(ctx)
	var got []read
	fetches.EachRecord(func(r *kgo.Record) {
		got = append(got, read{r.Partition, r.Offset, string(r.Key), string(r.Value)})
	})
	for _, e := range fetches.Errors() {
		if e.Err != context.DeadlineExceeded && e.Err != context.Canceled {
			return got, fmt.Errorf("fetch %s/%d: %w", e.Topic, e.Partition, e.Err)
		}
	}
	if ctx.Err() != nil && len(got) == 0 {
		return got, ctx.Err()
	}
	return got, nil
}
