// The operations added for the whole Kinesis API (tags by ARN, record size,
// capacity modes, warm throughput, account settings, enhanced monitoring,
// encryption, record distribution, channels), driven by the AWS SDK for
// JavaScript v3 as unchanged user code would; run by e2e/js_test.go with
// SHARDLOG_ENDPOINT set. Each test also sends one bad input and checks AWS's
// error type.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CreateStreamCommand,
  TagResourceCommand,
  UntagResourceCommand,
  ListTagsForResourceCommand,
  UpdateMaxRecordSizeCommand,
  PutRecordCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
  EnableEnhancedMonitoringCommand,
  DisableEnhancedMonitoringCommand,
  StartStreamEncryptionCommand,
  StopStreamEncryptionCommand,
  DescribeAccountSettingsCommand,
  UpdateAccountSettingsCommand,
  UpdateStreamWarmThroughputCommand,
  UpdateStreamModeCommand,
  UpdateStreamRecordDistributionStrategyCommand,
  CreateChannelCommand,
  ListChannelsCommand,
  DeleteChannelCommand,
} from "@aws-sdk/client-kinesis";
import { account, client, sleep, waitActive } from "./harness.mjs";

const stream = "js-ops";
const arn = `arn:aws:kinesis:us-east-1:${account}:stream/${stream}`;

// rejects asserts that the command fails with AWS's error type name.
async function rejects(command, name) {
  await assert.rejects(client.send(command), (err) => {
    assert.equal(err.name, name, `${err.name}: ${err.message}`);
    return true;
  });
}

test("CreateStream ON_DEMAND with tags; TagResource, UntagResource, ListTagsForResource", async () => {
  await client.send(new CreateStreamCommand({
    StreamName: stream, StreamModeDetails: { StreamMode: "ON_DEMAND" }, Tags: { team: "a" },
  }));
  const summary = await waitActive(stream);
  assert.equal(summary.OpenShardCount, 4);
  await client.send(new TagResourceCommand({ ResourceARN: arn, Tags: { env: "dev" } }));
  await client.send(new UntagResourceCommand({ ResourceARN: arn, TagKeys: ["team"] }));
  const out = await client.send(new ListTagsForResourceCommand({ ResourceARN: arn }));
  assert.deepEqual(out.Tags, [{ Key: "env", Value: "dev" }]);
  await rejects(new TagResourceCommand({ ResourceARN: arn + "-nope", Tags: { a: "b" } }), "ResourceNotFoundException");
});

test("UpdateMaxRecordSize, and a 1.5 MiB record written and read back", async () => {
  await client.send(new UpdateMaxRecordSizeCommand({ StreamARN: arn, MaxRecordSizeInKiB: 2048 }));
  const summary = await waitActive(stream);
  assert.equal(summary.MaxRecordSizeInKiB, 2048);
  const data = new Uint8Array(1536 * 1024).map((_, i) => i % 251);
  const put = await client.send(new PutRecordCommand({ StreamARN: arn, PartitionKey: "big", Data: data }));
  const it = await client.send(new GetShardIteratorCommand({
    StreamARN: arn, ShardId: put.ShardId, ShardIteratorType: "AT_SEQUENCE_NUMBER",
    StartingSequenceNumber: put.SequenceNumber,
  }));
  const got = await client.send(new GetRecordsCommand({ StreamARN: arn, ShardIterator: it.ShardIterator, Limit: 1 }));
  assert.equal(got.Records.length, 1);
  assert.deepEqual(got.Records[0].Data, data);
  await rejects(new PutRecordCommand({ StreamARN: arn, PartitionKey: "k", Data: new Uint8Array(2048 * 1024) }),
    "InvalidArgumentException");
  await rejects(new UpdateMaxRecordSizeCommand({ StreamARN: arn, MaxRecordSizeInKiB: 100 }), "ValidationException");
});

test("Enable and DisableEnhancedMonitoring", async () => {
  const on = await client.send(new EnableEnhancedMonitoringCommand({ StreamName: stream, ShardLevelMetrics: ["IncomingRecords"] }));
  assert.deepEqual(on.DesiredShardLevelMetrics, ["IncomingRecords"]);
  await waitActive(stream);
  const off = await client.send(new DisableEnhancedMonitoringCommand({ StreamName: stream, ShardLevelMetrics: ["ALL"] }));
  assert.deepEqual(off.DesiredShardLevelMetrics, []);
  await waitActive(stream);
  await rejects(new EnableEnhancedMonitoringCommand({ StreamName: stream, ShardLevelMetrics: ["Nope"] }), "ValidationException");
});

test("Start and StopStreamEncryption", async () => {
  await client.send(new StartStreamEncryptionCommand({ StreamName: stream, EncryptionType: "KMS", KeyId: "alias/aws/kinesis" }));
  assert.equal((await waitActive(stream)).EncryptionType, "KMS");
  const put = await client.send(new PutRecordCommand({ StreamName: stream, PartitionKey: "k", Data: new Uint8Array([1]) }));
  assert.equal(put.EncryptionType, "KMS");
  await client.send(new StopStreamEncryptionCommand({ StreamName: stream, EncryptionType: "KMS", KeyId: "alias/aws/kinesis" }));
  assert.equal((await waitActive(stream)).EncryptionType, "NONE");
  await rejects(new StartStreamEncryptionCommand({ StreamName: stream, EncryptionType: "KMS", KeyId: "alias/nope" }),
    "KMSNotFoundException");
});

test("Account settings and warm throughput", async () => {
  await rejects(new UpdateStreamWarmThroughputCommand({ StreamName: stream, WarmThroughputMiBps: 8 }), "InvalidArgumentException");
  await client.send(new UpdateAccountSettingsCommand({ MinimumThroughputBillingCommitment: { Status: "ENABLED" } }));
  const settings = await client.send(new DescribeAccountSettingsCommand({}));
  assert.equal(settings.MinimumThroughputBillingCommitment.Status, "ENABLED");
  const warm = await client.send(new UpdateStreamWarmThroughputCommand({ StreamName: stream, WarmThroughputMiBps: 8 }));
  assert.equal(warm.WarmThroughput.TargetMiBps, 8);
  const summary = await waitActive(stream);
  assert.equal(summary.OpenShardCount, 8);
});

test("Channels on an ON_DEMAND stream", async () => {
  const created = await client.send(new CreateChannelCommand({
    ChannelName: "js-chan",
    ServiceExecutionRoleARN: `arn:aws:iam::${account}:role/delivery`,
    StreamConfigurationList: [{ StreamARN: arn, RecordConfiguration: { RecordFormatType: "JSON" } }],
    S3DestinationConfiguration: { StorageConfiguration: { BucketARN: "arn:aws:s3:::js-bucket", CompressionType: "NONE", ExpectedBucketOwner: account } },
  }));
  assert.equal(created.ChannelDescription.ChannelName, "js-chan");
  const list = await client.send(new ListChannelsCommand({}));
  assert.deepEqual(list.ChannelSummaries.map((c) => c.ChannelName), ["js-chan"]);
  for (;;) { // only an ACTIVE channel can be deleted
    try {
      await client.send(new DeleteChannelCommand({ ChannelARN: created.ChannelDescription.ChannelARN }));
      break;
    } catch (err) {
      assert.equal(err.name, "ResourceInUseException", err.message);
      await sleep(50);
    }
  }
});

test("UpdateStreamMode to PROVISIONED; AUTO distribution refused there", async () => {
  await client.send(new UpdateStreamModeCommand({ StreamARN: arn, StreamModeDetails: { StreamMode: "PROVISIONED" } }));
  const summary = await waitActive(stream);
  assert.equal(summary.StreamModeDetails.StreamMode, "PROVISIONED");
  await rejects(new UpdateStreamModeCommand({ StreamARN: arn, StreamModeDetails: { StreamMode: "PROVISIONED" } }),
    "InvalidArgumentException");
  await rejects(new UpdateStreamRecordDistributionStrategyCommand({ StreamARN: arn, RecordDistributionStrategy: "AUTO" }),
    "InvalidArgumentException");
});
