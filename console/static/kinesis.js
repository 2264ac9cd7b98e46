// The Kinesis API as the console calls it: JSON 1.1 POSTs to the server's
// own origin, signed with SigV4 when the server verifies signatures.
import { sign } from './sigv4.js';

export class KinesisError extends Error {
  constructor(type, message, status) {
    super(message ? `${type}: ${message}` : type);
    this.type = type;
    this.status = status;
  }
}

// The answers that mean the credentials themselves are wrong, not that
// they lack a permission.
export const credentialErrors = new Set([
  'UnrecognizedClientException', 'InvalidSignatureException', 'IncompleteSignatureException', 'MissingAuthenticationTokenException',
]);

// unverified signs when the server verifies no signatures: it still
// requires every request to carry a well-formed one, as AWS does
// (MissingAuthenticationTokenException otherwise), and accepts any key.
const unverified = { accessKeyId: 'SHARDLOGCONSOLE', secretAccessKey: 'unverified' };

export class Client {
  // region is the region to sign for; skewMs is the server's clock minus ours.
  constructor(region) {
    this.region = region;
    this.creds = null;
    this.skewMs = 0;
  }

  async call(op, input = {}) {
    const body = JSON.stringify(input);
    const headers = { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'Kinesis_20131202.' + op };
    const req = { method: 'POST', host: location.host, path: '/', headers, body };
    const scope = { ...(this.creds || unverified), region: this.region, service: 'kinesis' };
    Object.assign(headers, await sign(req, scope, new Date(Date.now() + this.skewMs)));
    const res = await fetch('/', { method: 'POST', headers, body, cache: 'no-store', credentials: 'omit' });
    const text = await res.text();
    let doc = {};
    try { doc = text ? JSON.parse(text) : {}; } catch { doc = {}; }
    if (!res.ok) {
      const raw = doc.__type || res.headers.get('x-amzn-ErrorType') || `HTTP ${res.status}`;
      throw new KinesisError(raw.split('#').pop().split(':')[0], doc.message || doc.Message || '', res.status);
    }
    return doc;
  }

  // get fetches one of the console's own documents, signed like the API
  // calls when signing in is required (--metrics-auth guards the counters
  // as it guards /metrics); an error answer throws a KinesisError.
  async get(url) {
    const u = new URL(url, location.href);
    const headers = {};
    if (this.creds) {
      const req = { method: 'GET', host: location.host, path: u.pathname, query: u.search.slice(1), headers, body: '' };
      Object.assign(headers, await sign(req, { ...this.creds, region: this.region, service: 'kinesis' }, new Date(Date.now() + this.skewMs)));
    }
    const res = await fetch(u, { headers, cache: 'no-store', credentials: 'omit' });
    if (!res.ok) {
      const text = await res.text();
      let doc = {};
      try { doc = JSON.parse(text); } catch { doc = { message: text.trim() }; }
      throw new KinesisError((doc.__type || `HTTP ${res.status}`).split('#').pop(), doc.message || '', res.status);
    }
    return res.json();
  }

  async listStreams(max = 1000) {
    const out = [];
    let doc = await this.call('ListStreams', { Limit: 100 });
    for (;;) {
      out.push(...(doc.StreamSummaries || []));
      if (!doc.HasMoreStreams || !doc.NextToken || out.length >= max) return out;
      doc = await this.call('ListStreams', { NextToken: doc.NextToken });
    }
  }

  async listShards(stream) {
    const out = [];
    let doc = await this.call('ListShards', { StreamName: stream, MaxResults: 1000 });
    for (;;) {
      out.push(...(doc.Shards || []));
      if (!doc.NextToken) return out;
      doc = await this.call('ListShards', { NextToken: doc.NextToken, MaxResults: 1000 });
    }
  }

  async listConsumers(streamARN) {
    const out = [];
    let input = { StreamARN: streamARN, MaxResults: 100 };
    for (;;) {
      const doc = await this.call('ListStreamConsumers', input);
      out.push(...(doc.Consumers || []));
      if (!doc.NextToken) return out;
      input = { StreamARN: streamARN, NextToken: doc.NextToken };
    }
  }

  async listTags(stream) {
    const out = [];
    let input = { StreamName: stream, Limit: 50 };
    for (;;) {
      const doc = await this.call('ListTagsForStream', input);
      out.push(...(doc.Tags || []));
      if (!doc.HasMoreTags || !doc.Tags || doc.Tags.length === 0) return out;
      input = { StreamName: stream, Limit: 50, ExclusiveStartTagKey: doc.Tags[doc.Tags.length - 1].Key };
    }
  }
}
