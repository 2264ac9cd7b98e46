// Enhanced fan-out with the AWS SDK for JavaScript v3, run by e2e/js_test.go
// as `node subscribe.test.mjs` with SHARDLOG_ENDPOINT set: consumers are
// registered, and SubscribeToShard's event stream (over HTTP/2, the SDK's
// default for Kinesis) delivers records from TRIM_HORIZON, live records, and
// exactly the records after a ContinuationSequenceNumber.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CreateStreamCommand,
  DescribeStreamConsumerCommand,
  RegisterStreamConsumerCommand,
  PutRecordsCommand,
  SubscribeToShardCommand,
} from "@aws-sdk/client-kinesis";
import { account, client, sleep, waitActive } from "./harness.mjs";

const stream = "js-efo";
const shardId = "shardId-000000000000";
const enc = new TextEncoder();
const dec = new TextDecoder();

let streamARN;
const consumers = {};

async function register(name) {
  const out = await client.send(new RegisterStreamConsumerCommand({ StreamARN: streamARN, ConsumerName: name }));
  assert.match(out.Consumer.ConsumerARN, new RegExp(`^${streamARN}/consumer/${name}:\\d+$`));
  assert.ok(["CREATING", "ACTIVE"].includes(out.Consumer.ConsumerStatus));
  for (;;) {
    const d = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: out.Consumer.ConsumerARN }));
    if (d.ConsumerDescription.ConsumerStatus === "ACTIVE") return out.Consumer.ConsumerARN;
    await sleep(50);
  }
}

// put writes n records "<prefix>-i" and returns them as acknowledged.
async function put(prefix, n) {
  const records = [];
  for (let i = 0; i < n; i++) records.push({ PartitionKey: `${prefix}-${i}`, Data: enc.encode(`${prefix}-${i}`) });
  const out = await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  assert.equal(out.FailedRecordCount, 0);
  return out.Records.map((r, i) => ({ seq: r.SequenceNumber, data: `${prefix}-${i}` }));
}

// subscribe opens a subscription and returns its event iterator and an abort.
async function subscribe(consumerARN, position) {
  const abort = new AbortController();
  const out = await client.send(
    new SubscribeToShardCommand({ ConsumerARN: consumerARN, ShardId: shardId, StartingPosition: position }),
    { abortSignal: abort.signal },
  );
  assert.equal(out.$metadata.httpStatusCode, 200);
  return { events: out.EventStream[Symbol.asyncIterator](), abort };
}

// collect reads events until n records have arrived (events without records
// are heartbeats) and returns the records and the last event's continuation.
async function collect(sub, n) {
  const got = [];
  let cont;
  while (got.length < n) {
    const { value, done } = await sub.events.next();
    assert.ok(!done, `the event stream ended after ${got.length} of ${n} records`);
    const ev = value.SubscribeToShardEvent;
    assert.ok(ev, `unexpected event ${JSON.stringify(Object.keys(value))}`);
    assert.equal(typeof ev.MillisBehindLatest, "number");
    assert.match(ev.ContinuationSequenceNumber, /^\d+$/);
    for (const r of ev.Records) {
      assert.ok(r.ApproximateArrivalTimestamp instanceof Date);
      got.push({ seq: r.SequenceNumber, data: dec.decode(r.Data) });
    }
    cont = ev.ContinuationSequenceNumber;
  }
  return { got, cont };
}

let first; // acknowledged records of the first batch
let cont; // the continuation after them

test("RegisterStreamConsumer and DescribeStreamConsumer", async () => {
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
  streamARN = (await waitActive(stream)).StreamARN;
  assert.equal(streamARN, `arn:aws:kinesis:us-east-1:${account}:stream/${stream}`);
  consumers.a = await register("js-a");
  consumers.b = await register("js-b");
});

test("SubscribeToShard from TRIM_HORIZON delivers the stored records", async () => {
  first = await put("first", 10);
  const sub = await subscribe(consumers.a, { Type: "TRIM_HORIZON" });
  try {
    const res = await collect(sub, 10);
    assert.deepEqual(res.got, first);
    assert.ok(BigInt(res.cont) >= BigInt(first.at(-1).seq), `continuation ${res.cont} before the last record ${first.at(-1).seq}`);
    cont = res.cont;
  } finally {
    sub.abort.abort();
  }
});

test("a second subscription of a consumer to a shard within 5 s is ResourceInUseException", async () => {
  await assert.rejects(subscribe(consumers.a, { Type: "LATEST" }), (err) => {
    assert.equal(err.name, "ResourceInUseException");
    assert.ok(err.message.length > 0);
    return true;
  });
});

test("after the ContinuationSequenceNumber: exactly the newer records, as they arrive", async () => {
  const sub = await subscribe(consumers.b, { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: cont });
  try {
    const live = await put("live", 5); // written after the subscription was established
    const res = await collect(sub, 5);
    assert.deepEqual(res.got, live, "records before the continuation were delivered again, or live ones lost");
  } finally {
    sub.abort.abort();
  }
});

test("an unknown consumer is ResourceNotFoundException", async () => {
  await assert.rejects(subscribe(`${streamARN}/consumer/nobody:1700000000`, { Type: "LATEST" }), (err) => {
    assert.equal(err.name, "ResourceNotFoundException");
    assert.ok(err.message.length > 0);
    return true;
  });
});
