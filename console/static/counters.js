// Live rates from /console/counters.json: one poller for the whole page,
// started while some view listens. A rate is the change of a counter
// between two documents over the server's time between them.

const key = (name, stream, shard = '') => name + '\u0000' + stream + '\u0000' + shard;

// Snapshot is one document's values, with the rates since the previous one
// (empty for the first).
export class Snapshot {
  constructor(at, values, rates, hasRates) {
    this.at = at;
    this.values = values;
    this.rates = rates;
    this.hasRates = hasRates; // false for the first document: no rates yet
  }
  value(name, stream, shard) { return this.values.get(key(name, stream, shard)); }
  rate(name, stream, shard) { return this.rates.get(key(name, stream, shard)); }
  // shards lists the shards of stream that have series named name.
  shards(name, stream) {
    const out = [];
    const prefix = name + '\u0000' + stream + '\u0000';
    for (const k of this.values.keys()) if (k.startsWith(prefix) && k.length > prefix.length) out.push(k.slice(prefix.length));
    return out;
  }
}

export class Counters {
  // get fetches a document (Client.get: signed when signing in is required).
  constructor(enabled, get, intervalMs = 2000) {
    this.enabled = enabled;
    this.get = get;
    this.intervalMs = intervalMs;
    this.listeners = new Set();
    this.prev = null;
    this.timer = null;
    this.last = null;
  }

  // listen calls fn with every new Snapshot; it returns the function that stops listening.
  listen(fn, onError) {
    const l = { fn, onError };
    this.listeners.add(l);
    if (this.last) fn(this.last);
    if (this.enabled && this.listeners.size === 1) this.schedule(0);
    return () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0) { clearTimeout(this.timer); this.timer = null; }
    };
  }

  schedule(ms) {
    this.timer = setTimeout(() => this.tick(), ms);
  }

  async tick() {
    try {
      if (!document.hidden) this.publish(await this.get('counters.json'));
    } catch (e) {
      // A refusal (a key not allowed the metrics under --metrics-auth)
      // will not change by asking again: it is told once, and polling stops.
      const refused = e.status >= 400 && e.status < 500;
      if (refused) this.enabled = false;
      const err = new Error('Live counters: ' + e.message);
      for (const l of this.listeners) l.onError && l.onError(err);
      if (refused) return;
    }
    if (this.listeners.size > 0) this.schedule(this.intervalMs);
  }

  publish(doc) {
    const values = new Map();
    for (const s of doc.series) values.set(key(s.name, s.stream, s.shard), s.value);
    const rates = new Map();
    const hasRates = Boolean(this.prev && doc.at > this.prev.at);
    if (hasRates) {
      const dt = (doc.at - this.prev.at) / 1000;
      // A series absent before was created since, at zero; one that went
      // down belongs to a stream deleted and created again.
      for (const [k, v] of values) rates.set(k, Math.max(0, (v - (this.prev.values.get(k) || 0)) / dt));
    }
    this.prev = { at: doc.at, values };
    this.last = new Snapshot(doc.at, values, rates, hasRates);
    for (const l of this.listeners) l.fn(this.last);
  }
}
