// kafkajs against a Kafka-compatible broker: producer (every codec kafkajs ships: none and
// gzip), a consumer group of two members, and the admin client. Prints one
// "PASS name: ..." or "FAIL name: ..." line and exits 0 or 1.
//
//   node compat.js producer|group|admin BOOTSTRAP
'use strict';

const { Kafka, CompressionTypes, AssignerProtocol, logLevel } = require('kafkajs');

const TIMEOUT_MS = 60000;
const runTag = (Date.now() % 0xffffff).toString(16);
const key = (i) => `key-${i % 37}`;
const value = (tag, i) => `${tag}:${i}:payload-payload-payload`;

function check(cond, message) {
  if (!cond) throw new Error(message);
}

function client(bootstrap) {
  return new Kafka({ clientId: 'sluice-compat', brokers: [bootstrap], logLevel: logLevel.ERROR });
}

async function createTopic(kafka, topic, numPartitions) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
    check(created, `createTopics(${topic}) returned false`);
  } finally {
    await admin.disconnect();
  }
}

// Sends n keyed records in one batch with acks=-1; returns [partition, offset] per index.
async function send(kafka, topic, tag, n, compression) {
  const producer = kafka.producer();
  await producer.connect();
  try {
    const where = new Map();
    // One record per send call keeps each record's own offset in its delivery report.
    const sends = [];
    for (let i = 0; i < n; i++) {
      sends.push(producer.send({ topic, acks: -1, compression,
        messages: [{ key: key(i), value: value(tag, i) }] })
        .then(([md]) => where.set(i, [md.partition, Number(md.baseOffset)])));
    }
    await Promise.all(sends);
    return where;
  } finally {
    await producer.disconnect();
  }
}

function verifyDelivery(where, n) {
  const perPartition = new Map();
  const keyPartition = new Map();
  for (let i = 0; i < n; i++) {
    const d = where.get(i);
    check(d, `no delivery report for record ${i}`);
    const [p, o] = d;
    if (!perPartition.has(p)) perPartition.set(p, new Set());
    perPartition.get(p).add(o);
    check(!keyPartition.has(key(i)) || keyPartition.get(key(i)) === p, `key ${key(i)} went to two partitions`);
    keyPartition.set(key(i), p);
  }
  for (const [p, offsets] of perPartition) {
    for (let o = 0; o < offsets.size; o++) check(offsets.has(o), `partition ${p}: offset ${o} missing`);
  }
}

function verifyReadBack(got, where, tag, n) {
  check(got.length === n, `read ${got.length} records, expected ${n}`);
  const seen = new Set();
  for (const r of got) {
    const parts = r.value.split(':');
    check(parts[0] === tag, `foreign value ${r.value}`);
    const i = Number(parts[1]);
    check(!seen.has(i), `record ${i} read twice`);
    seen.add(i);
    check(r.key === key(i) && r.value === value(tag, i), `record ${i} read as ${r.key}=${r.value}`);
    const [p, o] = where.get(i);
    check(p === r.partition && o === r.offset, `record ${i} read at ${r.partition}/${r.offset}, delivered to ${p}/${o}`);
  }
}

// Runs `consumers` until `done()` holds, collecting what they read.
async function consumeUntil(consumers, topic, done) {
  const got = [];
  let resolve;
  const finished = new Promise((r) => { resolve = r; });
  for (const c of consumers) {
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() });
        if (done(got)) resolve();
      },
    });
  }
  const timer = setTimeout(resolve, TIMEOUT_MS);
  await finished;
  clearTimeout(timer);
  return got;
}

async function producerCheck(bootstrap) {
  const kafka = client(bootstrap);
  const n = 200;
  for (const [name, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    const topic = `kafkajs-${name}-${runTag}`;
    await createTopic(kafka, topic, 3);
    const where = await send(kafka, topic, name, n, codec);
    verifyDelivery(where, n);
    const consumer = kafka.consumer({ groupId: `kafkajs-read-${name}-${runTag}` });
    const got = await consumeUntil([consumer], topic, (g) => g.length >= n);
    await consumer.disconnect();
    verifyReadBack(got, where, name, n);
  }
  return `${n} keyed records each uncompressed and gzip (acks=-1), read back in a group`;
}

async function groupCheck(bootstrap) {
  const kafka = client(bootstrap);
  const topic = `kafkajs-group-${runTag}`;
  const groupId = `kafkajs-g-${runTag}`;
  await createTopic(kafka, topic, 4);
  const n = 400;
  const where = await send(kafka, topic, 'grp', n, CompressionTypes.None);
  const members = [kafka.consumer({ groupId }), kafka.consumer({ groupId })];
  const admin = kafka.admin();
  await admin.connect();
  let described = null;
  const splitEvenly = async () => {
    const { groups: [g] } = await admin.describeGroups([groupId]);
    described = g;
    const held = g.members.map((m) => {
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      return a ? (a.assignment[topic] || []).length : 0;
    });
    return g.state === 'Stable' && held.length === 2 && held.every((h) => h === 2);
  };
  const got = await consumeUntil(members, topic, (g) => g.length >= n);
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await splitEvenly()) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  check(described && described.state === 'Stable' && described.members.length === 2,
    `group never split 2+2: ${JSON.stringify(described && { state: described.state, members: described.members.length })}`);
  verifyReadBack(got, where, 'grp', n);
  for (const m of members) await m.disconnect();
  const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  for (const e of ends) {
    const c = offsets.partitions.find((p) => p.partition === e.partition);
    check(c && c.offset === e.high, `partition ${e.partition}: committed ${c && c.offset}, end ${e.high}`);
  }
  await admin.disconnect();
  return `2 members split 4 partitions 2+2, ${n} records read once, committed offsets = end offsets`;
}

async function adminCheck(bootstrap) {
  const kafka = client(bootstrap);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topic = `kafkajs-admin-${runTag}`;
    check(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }), 'create returned false');
    check(!(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })), 'second create did not report an existing topic');
    check((await admin.listTopics()).includes(topic), 'created topic not listed');
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    check(md.topics[0].partitions.length === 3, `metadata shows ${md.topics[0].partitions.length} partitions`);
    const cluster = await admin.describeCluster();
    check(cluster.brokers.length === 1 && cluster.controller !== null, `cluster ${JSON.stringify(cluster)}`);
    const offsets = await admin.fetchTopicOffsets(topic);
    check(offsets.length === 3 && offsets.every((o) => o.high === '0'), `offsets ${JSON.stringify(offsets)}`);
    const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false });
    check(configs.resources[0].errorCode === 0, `describeConfigs error ${configs.resources[0].errorCode}`);
    const { groups } = await admin.listGroups();
    check(Array.isArray(groups), 'listGroups');
    await admin.deleteTopics({ topics: [topic] });
    check(!(await admin.listTopics()).includes(topic), 'deleted topic still listed');
    return 'create (twice), list, metadata, describe cluster, topic offsets, describe configs, list groups, delete';
  } finally {
    await admin.disconnect();
  }
}

const checks = { producer: producerCheck, group: groupCheck, admin: adminCheck };

async function main() {
  const [name, bootstrap] = process.argv.slice(2);
  if (!checks[name] || !bootstrap) {
    console.error('usage: node compat.js producer|group|admin BOOTSTRAP');
    process.exit(2);
  }
  try {
    const summary = await checks[name](bootstrap);
    console.log(`PASS ${name}: ${summary}`);
    process.exit(0);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}

main();
