// Command compat drives a Kafka-compatible broker with the Go clients users run: franz-go
// (producer, consumer groups, the kadm admin client) and sarama (producer, consumer group, and
// sarama pinned to Kafka 0.10.2's protocol, which negotiates nothing). Each check prints one
// "PASS name: ..." or "FAIL name: ..." line and exits 0 or 1.
//
//	compat CHECK BOOTSTRAP    CHECK: franz-produce franz-group kadm sarama-produce sarama-group sarama-old
package main

import (
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// timeout bounds every wait of a check.
const timeout = 60 * time.Second

type check func(bootstrap string) (string, error)

var checks = map[string]check{
	"franz-produce":  franzProduce,
	"franz-group":    franzGroup,
	"kadm":           kadmAdmin,
	"sarama-produce": saramaProduce,
	"sarama-group":   saramaGroup,
	"sarama-old":     saramaOld,
}

func main() {
	if len(os.Args) != 3 || checks[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: compat franz-produce|franz-group|kadm|sarama-produce|sarama-group|sarama-old BOOTSTRAP")
		os.Exit(2)
	}
	name := os.Args[1]
	if os.Getenv("COMPAT_SARAMA_LOG") != "" {
		// sarama's own log (joins, rebalances, retries) on stderr, to diagnose a slow check.
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
	summary, err := checks[name](os.Args[2])
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", name, err)
		os.Exit(1)
	}
	fmt.Printf("PASS %s: %s\n", name, summary)
}

// runTag makes topic and group names unique per run.
var runTag = fmt.Sprintf("%x", time.Now().UnixNano()%0xFFFFFF)

func key(i int) string { return fmt.Sprintf("key-%d", i%37) }

func value(tag string, i int) string { return fmt.Sprintf("%s:%d:payload-payload-payload", tag, i) }

// delivered is where a record's delivery report put it.
type delivered struct {
	partition int32
	offset    int64
}

// read is a record as a consumer returned it.
type read struct {
	partition int32
	offset    int64
	key       string
	value     string
}

// verifyDelivery: offsets contiguous from `first` per partition, one partition per key.
func verifyDelivery(where map[int]delivered, n int, first map[int32]int64) error {
	perPartition := map[int32][]int64{}
	keyPartition := map[string]int32{}
	for i := 0; i < n; i++ {
		d, ok := where[i]
		if !ok {
			return fmt.Errorf("no delivery report for record %d", i)
		}
		perPartition[d.partition] = append(perPartition[d.partition], d.offset)
		if p, seen := keyPartition[key(i)]; seen && p != d.partition {
			return fmt.Errorf("key %s went to partitions %d and %d", key(i), p, d.partition)
		}
		keyPartition[key(i)] = d.partition
	}
	for p, offs := range perPartition {
		seen := map[int64]bool{}
		for _, o := range offs {
			seen[o] = true
		}
		for o := first[p]; o < first[p]+int64(len(offs)); o++ {
			if !seen[o] {
				return fmt.Errorf("partition %d: offset %d missing from the delivery reports", p, o)
			}
		}
	}
	return nil
}

// verifyReadBack: every record read exactly once, where its delivery report put it.
func verifyReadBack(got []read, where map[int]delivered, tag string, n int) error {
	if len(got) != n {
		return fmt.Errorf("read %d records, expected %d", len(got), n)
	}
	seen := map[int]bool{}
	for _, r := range got {
		parts := strings.SplitN(r.value, ":", 3)
		if len(parts) != 3 || parts[0] != tag {
			return fmt.Errorf("foreign value %q", r.value)
		}
		i, err := strconv.Atoi(parts[1])
		if err != nil {
			return fmt.Errorf("foreign value %q", r.value)
		}
		if seen[i] {
			return fmt.Errorf("record %d read twice", i)
		}
		seen[i] = true
		if r.key != key(i) || r.value != value(tag, i) {
			return fmt.Errorf("record %d read as %q=%q", i, r.key, r.value)
		}
		if d := where[i]; d.partition != r.partition || d.offset != r.offset {
			return fmt.Errorf("record %d read at %d/%d, delivered to %d/%d", i, r.partition, r.offset, d.partition, d.offset)
		}
	}
	return nil
}
