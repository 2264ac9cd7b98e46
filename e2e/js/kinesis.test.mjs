// The AWS SDK for JavaScript v3 against a shardlog server, run by e2e/js_test.go
// as `node kinesis.test.mjs` with SHARDLOG_ENDPOINT set. The SDK's default
// Kinesis handler speaks HTTP/2 (cleartext, prior knowledge, for an http://
// endpoint), so every call here goes over h2c as unchanged user code would.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  PutRecordsCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
  ListShardsCommand,
} from "@aws-sdk/client-kinesis";
import { account, client, waitActive } from "./harness.mjs";

const stream = "js-sdk";
const enc = new TextEncoder();
const dec = new TextDecoder();

// sent holds what PutRecords acknowledged, by shard, in sequence order.
const sent = new Map();

test("CreateStream and wait for ACTIVE", async () => {
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
  const summary = await waitActive(stream);
  assert.equal(summary.OpenShardCount, 2);
  assert.equal(summary.StreamARN, `arn:aws:kinesis:us-east-1:${account}:stream/${stream}`);
});

test("PutRecords", async () => {
  const records = [];
  for (let i = 0; i < 50; i++) {
    records.push({ PartitionKey: `key-${i}`, Data: enc.encode(`record ${i}`) });
  }
  const out = await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  assert.equal(out.FailedRecordCount, 0);
  assert.equal(out.Records.length, 50);
  out.Records.forEach((r, i) => {
    assert.match(r.SequenceNumber, /^\d+$/);
    assert.match(r.ShardId, /^shardId-\d{12}$/);
    if (!sent.has(r.ShardId)) sent.set(r.ShardId, []);
    sent.get(r.ShardId).push({ seq: r.SequenceNumber, key: `key-${i}`, data: `record ${i}` });
  });
});

test("GetShardIterator and GetRecords read back every record in order", async () => {
  const shards = await client.send(new ListShardsCommand({ StreamName: stream }));
  assert.equal(shards.Shards.length, 2);
  let total = 0;
  for (const shard of shards.Shards) {
    const it = await client.send(new GetShardIteratorCommand({
      StreamName: stream, ShardId: shard.ShardId, ShardIteratorType: "TRIM_HORIZON",
    }));
    const got = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
    assert.ok(got.NextShardIterator, "an open shard has a next iterator");
    assert.equal(got.MillisBehindLatest, 0);
    const want = sent.get(shard.ShardId) ?? [];
    assert.deepEqual(
      got.Records.map((r) => ({ seq: r.SequenceNumber, key: r.PartitionKey, data: dec.decode(r.Data) })),
      want,
    );
    for (const r of got.Records) {
      assert.ok(r.ApproximateArrivalTimestamp instanceof Date);
    }
    total += got.Records.length;
  }
  assert.equal(total, 50);
});

test("an error carries AWS's name and message", async () => {
  await assert.rejects(
    client.send(new DescribeStreamSummaryCommand({ StreamName: "no-such-stream" })),
    (err) => {
      assert.equal(err.name, "ResourceNotFoundException");
      assert.equal(err.message, `Stream no-such-stream under account ${account} not found.`);
      assert.equal(err.$metadata.httpStatusCode, 400);
      return true;
    },
  );
});

test("a bad argument is AWS's ValidationException", async () => {
  await assert.rejects(
    client.send(new CreateStreamCommand({ StreamName: "bad name!", ShardCount: 1 })),
    (err) => {
      assert.equal(err.name, "ValidationException");
      assert.match(err.message, /^1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: /);
      return true;
    },
  );
});
