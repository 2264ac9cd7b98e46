// What every JavaScript SDK test script shares: the client of the server
// e2e/js_test.go started (SHARDLOG_ENDPOINT), the account, and waiting for a
// stream to be ACTIVE. The client is destroyed after the script's tests.
import { after } from "node:test";
import { KinesisClient, DescribeStreamSummaryCommand } from "@aws-sdk/client-kinesis";

const endpoint = process.env.SHARDLOG_ENDPOINT;
if (!endpoint) {
  throw new Error("SHARDLOG_ENDPOINT is not set");
}

export const account = process.env.SHARDLOG_ACCOUNT ?? "000000000000";

export const client = new KinesisClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  maxAttempts: 1, // a retry would hide the server's first answer
});
after(() => client.destroy());

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// waitActive polls DescribeStreamSummary until the stream is ACTIVE and
// returns the summary; the Go test's timeout bounds it.
export async function waitActive(name) {
  for (;;) {
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    if (out.StreamDescriptionSummary.StreamStatus === "ACTIVE") {
      return out.StreamDescriptionSummary;
    }
    await sleep(50);
  }
}
